r"""Trains a GPT (a causal language model) on plain text and exports text generation.

    python -m trainers.train_gpt                   # llama_tiny on Shakespeare
    python -m trainers.train_gpt --model=llama_mini --corpus='books/*.txt' \
        --strategy=mirrored --train_steps=20000 --batch_size=64

The first run learns a SentencePiece vocabulary of the model's size from the training
documents (or reads --tokenizer_file) and keeps it in --model_dir, with the config and
the checkpoints; a rerun resumes. A share of the documents (--eval_fraction) is held
out: its loss and perplexity are reported at every checkpoint (and written to
TensorBoard under <model_dir>/validation), and the weights with the lowest held-out
loss are what gets exported. The export's signatures take a prompt string and return
text, with decoding settings per request (see kerasllm.export.gpt_signatures).
"""
import os

import numpy as np
from absl import flags, logging

from kerasllm.data.corpus import split_documents
from kerasllm.data.lm_examples import lm_dataset_fn, token_stream
from kerasllm.errors import DataError
from kerasllm.evaluation.language_model import documents_loss
from kerasllm.evaluation.validation import Validation
from kerasllm.models import GptCausalLM, GptDecoder
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.training.checkpoints import ensure_writable
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common, shared_flags

FAMILY = "gpt"


def define_flags(fv):
    shared_flags.define_model_flags(fv, FAMILY, "llama_tiny")
    shared_flags.define_corpus_flags(fv)
    flags.DEFINE_string("tokenizer_file", None,
                        "SentencePiece .model to use. Default: <model_dir>/sentencepiece.model, "
                        "learned from the training documents on the first run.",
                        flag_values=fv)
    flags.DEFINE_integer("vocab_size", None,
                         "Size of a vocabulary learned from the corpus. Default: the model's.",
                         lower_bound=300, flag_values=fv)
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per training window.",
                         lower_bound=8, flag_values=fv)
    flags.DEFINE_float("eval_fraction", 0.05,
                       "Share of the documents held out for validation loss and perplexity.",
                       lower_bound=0.0, upper_bound=0.5, flag_values=fv)
    define_new_tokens_flag(fv)
    shared_flags.define_export_flags(fv, "<model>")
    # The defaults train llama_tiny on Shakespeare in about five minutes on 2 CPU cores.
    shared_flags.define_training_flags(fv, model_dir=None, train_steps=600, batch_size=32,
                                       learning_rate=2e-3, checkpoint_every=200)


def unigram_perplexity(train_stream, eval_stream, vocab_size):
    """The held-out perplexity of the training tokens' frequencies (add-one smoothed):
    what a model that ignores context scores, the bar a language model must clear."""
    counts = np.bincount(train_stream, minlength=vocab_size) + 1.0
    log_probabilities = np.log(counts / counts.sum())
    return float(np.exp(-log_probabilities[eval_stream].mean()))


def corpus_data(train_documents, eval_documents, tokenizer, *, seq_length, batch_size,
                train_config, model_dir):
    """What a language model learns from plain documents: (the training dataset_fn of
    their token stream in `seq_length` windows, a Validation of the held-out
    documents' loss and perplexity or None without them, the held-out unigram
    perplexity or None). `model_dir`: where validation keeps its records and best
    weights (None on a multi-worker run's other workers)."""
    logging.info("tokenizing %d documents", len(train_documents) + len(eval_documents))
    train_stream = token_stream(train_documents, tokenizer, tokenizer.eos_id)
    logging.info("%d training documents, %d tokens; %d held out", len(train_documents),
                 len(train_stream), len(eval_documents))
    validation, baseline = None, None
    if eval_documents:
        eval_stream = token_stream(eval_documents, tokenizer, tokenizer.eos_id)
        baseline = unigram_perplexity(train_stream, eval_stream, tokenizer.vocab_size)
        logging.info("validation perplexity of the unigram frequencies: %.1f", baseline)
        validation = Validation(
            documents_loss(eval_stream, eval_documents, seq_length=seq_length,
                           batch_size=batch_size),
            "loss", model_dir, larger_is_better=False)
    dataset_fn = lm_dataset_fn(train_stream, seq_length=seq_length,
                               global_batch_size=train_config.micro_batch_size,
                               seed=train_config.seed)
    return dataset_fn, validation, baseline


def run(fv):
    model_config = shared_flags.model_config_from_flags(fv, FAMILY, "train_gpt")
    max_seq_length = common.sequence_length(fv, model_config, fv.model)
    check_new_tokens(fv, model_config, fv.model)
    export_root = common.export_root(fv, fv.model)
    train_config = shared_flags.train_config_from_flags(
        fv, model_dir=fv.model_dir or os.path.join("model_dirs", fv.model))
    model_dir = train_config.model_dir
    common.check_run_dir(model_dir, FAMILY, "train_gpt")
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(model_dir)

    documents = common.read_corpus(fv)
    train_documents, eval_documents = (split_documents(documents, fv.eval_fraction,
                                                       train_config.seed)
                                       if fv.eval_fraction else (documents, []))
    tokenizer = common.sentencepiece_tokenizer(
        fv, model_dir, lambda: [line for document in train_documents for line in document],
        fv.vocab_size or model_config.vocab_size, "the corpus")
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    if is_chief(strategy):
        describe_model_dir(model_dir, FAMILY, model_config, tokenizer)
    dataset_fn, validation, baseline = corpus_data(
        train_documents, eval_documents, tokenizer, seq_length=max_seq_length,
        batch_size=fv.batch_size, train_config=train_config,
        model_dir=model_dir if is_chief(strategy) else None)
    result = train(lambda: GptCausalLM(GptDecoder(model_config)), dataset_fn, train_config,
                   strategy, on_evaluate=validation)
    common.log_finished(result)
    if not common.export_wanted(fv, result, strategy):
        return
    run_metadata = common.prepare_export(validation, result)
    result.task.tokenizer = tokenizer
    export_gpt(fv, export_root, result.task,
               {"model": fv.model, "max_seq_length": max_seq_length,
                "unigram_perplexity": baseline, **run_metadata})


def define_new_tokens_flag(fv):
    flags.DEFINE_integer("max_new_tokens", 128,
                         "The most tokens one request to the export may generate.",
                         lower_bound=1, flag_values=fv)


def check_new_tokens(fv, config, source):
    """--max_new_tokens must leave room for a prompt in the position table."""
    if fv.max_new_tokens >= config.max_sequence_length:
        raise DataError(f"--max_new_tokens={fv.max_new_tokens} leaves no room for a prompt in "
                        f"{source}'s {config.max_sequence_length} positions")


def export_gpt(fv, export_root, task, metadata):
    """Exports `task` (with its tokenizer) as the next version under export_root:
    gpt_signatures for --max_new_tokens, and `metadata` beside the family, config
    and tokenizer settings; int8 weights with --quantize."""
    common.quantize_for_export(fv, task)
    common.export(
        fv, export_root, task.serving_signatures(max_new_tokens=fv.max_new_tokens),
        [task, task.tokenizer],
        {"family": FAMILY, "config": task.backbone.config.to_dict(),
         "tokenizer": task.tokenizer.settings(), "max_new_tokens": fv.max_new_tokens,
         **metadata},
        **task.export_options())

if __name__ == "__main__":
    common.main("train_gpt", define_flags, run)
