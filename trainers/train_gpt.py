"""Trains a GPT (a causal language model) on plain text and exports text generation.

    python -m trainers.train_gpt                   # gpt_tiny on Shakespeare
    python -m trainers.train_gpt --model=gpt_mini --corpus='books/*.txt' \
        --strategy=mirrored --train_steps=20000 --batch_size=64

The first run learns a SentencePiece vocabulary of the model's size from the training
documents (or reads --tokenizer_file) and keeps it in --model_dir, with the config and
the checkpoints; a rerun resumes. A share of the documents (--eval_fraction) is held
out: its loss and perplexity are reported at every checkpoint. The export's
signatures take a prompt string and return text, with decoding settings per request
(see kerasllm.export.gpt_signatures).
"""
import math
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

from kerasllm.data.corpus import split_documents
from kerasllm.data.lm_examples import lm_dataset, lm_dataset_fn, token_stream
from kerasllm.errors import DataError
from kerasllm.export import gpt_signatures
from kerasllm.models import GptCausalLM, GptDecoder, registry
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.tokenizers.sentencepiece import (MODEL_FILE, SentencePieceTokenizer,
                                               train_sentencepiece)
from kerasllm.training import flags as training_flags
from kerasllm.training.loop import ensure_writable, train
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common

FAMILY = "gpt"


def define_flags(fv):
    flags.DEFINE_string("model", "gpt_tiny",
                        f"GPT config name: {', '.join(registry.model_names(FAMILY))}.",
                        flag_values=fv)
    common.define_corpus_flags(fv)
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
    flags.DEFINE_integer("max_new_tokens", 128,
                         "The most tokens one request to the export may generate.",
                         lower_bound=1, flag_values=fv)
    common.define_export_flags(fv, "<model>")
    # The defaults train gpt_tiny on Shakespeare in about five minutes on 2 CPU cores.
    training_flags.define_training_flags(
        model_dir=None, train_steps=600, batch_size=32, learning_rate=2e-3,
        checkpoint_every=200, flag_values=fv)


def load_or_learn_tokenizer(fv, documents, model_dir, vocab_size):
    """--tokenizer_file, else the one kept with the checkpoints (so a resumed run keeps
    its token ids), else one learned from the training documents."""
    path = fv.tokenizer_file or os.path.join(model_dir, MODEL_FILE)
    if fv.tokenizer_file or os.path.exists(path):
        return SentencePieceTokenizer.from_file(path)
    logging.info("learning a %d-piece SentencePiece vocabulary from the corpus", vocab_size)
    return train_sentencepiece([line for document in documents for line in document],
                               vocab_size=vocab_size)


def validation_scorer(model_holder, stream, seq_length, batch_size):
    """step -> logs the held-out loss and perplexity of the model being trained."""
    dataset = lm_dataset(stream, seq_length=seq_length, batch_size=batch_size,
                         training=False)
    losses, evaluators = [], {}

    def score(step, metrics):
        del metrics
        model = model_holder[-1]
        if id(model) not in evaluators:  # one traced function per model built
            evaluators[id(model)] = tf.function(
                lambda batch: model.compute_loss_and_metrics(batch)[0])
        total, windows = 0.0, 0
        for batch in dataset:  # every window holds seq_length - 1 predictions
            count = int(batch["token_ids"].shape[0])
            total += float(evaluators[id(model)](batch)) * count
            windows += count
        loss = total / windows
        losses.append((step, loss))
        logging.info("step %d validation: loss %.3f  perplexity %.1f", step, loss,
                     math.exp(min(loss, 50.0)))

    return score, losses


def unigram_perplexity(train_stream, eval_stream, vocab_size):
    """The held-out perplexity of the training tokens' frequencies (add-one smoothed):
    what a model that ignores context scores, the bar a language model must clear."""
    counts = np.bincount(train_stream, minlength=vocab_size) + 1.0
    log_probabilities = np.log(counts / counts.sum())
    return float(np.exp(-log_probabilities[eval_stream].mean()))


def run(fv):
    family, model_config = registry.lookup(fv.model)
    if family.name != FAMILY:
        raise DataError(f"--model={fv.model} is a {family.name} model; train_gpt trains "
                        f"{', '.join(registry.model_names(FAMILY))}")
    max_seq_length = common.sequence_length(fv, model_config, fv.model)
    if fv.max_new_tokens >= model_config.max_sequence_length:
        raise DataError(f"--max_new_tokens={fv.max_new_tokens} leaves no room for a prompt in "
                        f"{fv.model}'s {model_config.max_sequence_length} positions")
    export_root = common.export_root(fv, fv.model)
    train_config = training_flags.train_config_from_flags(
        fv, model_dir=fv.model_dir or os.path.join("model_dirs", fv.model))
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(train_config.model_dir)

    documents = common.read_corpus(fv)
    train_documents, eval_documents = (split_documents(documents, fv.eval_fraction,
                                                       train_config.seed)
                                       if fv.eval_fraction else (documents, []))
    tokenizer = load_or_learn_tokenizer(fv, train_documents, train_config.model_dir,
                                        fv.vocab_size or model_config.vocab_size)
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    if is_chief(strategy):
        describe_model_dir(train_config.model_dir, FAMILY, model_config, tokenizer)
    train_stream = token_stream(train_documents, tokenizer, tokenizer.eos_id)
    logging.info("%d training documents, %d tokens; %d held out", len(train_documents),
                 len(train_stream), len(eval_documents))
    models = []
    on_log, validation = None, []
    baseline = None
    if eval_documents:
        eval_stream = token_stream(eval_documents, tokenizer, tokenizer.eos_id)
        baseline = unigram_perplexity(train_stream, eval_stream, tokenizer.vocab_size)
        logging.info("validation perplexity of the unigram frequencies: %.1f", baseline)
        on_log, validation = validation_scorer(models, eval_stream, max_seq_length,
                                               fv.batch_size)

    def build_task():
        models.append(GptCausalLM(GptDecoder(model_config)))
        return models[-1]

    def on_checkpoint(step, metrics):
        if on_log and (step % train_config.checkpoint_every == 0
                       or step == train_config.train_steps):
            on_log(step, metrics)

    result = train(build_task, lm_dataset_fn(train_stream, seq_length=max_seq_length,
                                             global_batch_size=train_config.micro_batch_size,
                                             seed=train_config.seed),
                   train_config, strategy, on_log=on_checkpoint)
    logging.info("finished at step %d: %s", result.step,
                 "  ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())))

    if fv.export and is_chief(strategy):
        common.export(
            fv, export_root,
            gpt_signatures.gpt_signatures(
                result.task, tokenizer,
                max_prompt_length=model_config.max_sequence_length - fv.max_new_tokens,
                max_new_tokens=fv.max_new_tokens),
            [result.task, tokenizer],
            {"family": FAMILY, "model": fv.model, "config": model_config.to_dict(),
             "tokenizer": tokenizer.settings(), "max_seq_length": max_seq_length,
             "max_new_tokens": fv.max_new_tokens, "step": result.step,
             "metrics": result.metrics,
             "validation": [{"step": s, "loss": loss} for s, loss in validation],
             "unigram_perplexity": baseline},
            warmup_inputs=gpt_signatures.warmup_inputs(), batching=gpt_signatures.BATCHING)


if __name__ == "__main__":
    common.main("train_gpt", define_flags, run)
