"""The plainest keras-hub recipes a user could write in twenty lines, the baselines
of the same-budget quality benchmark (bench/budget_quality.py): keras-hub's layers
or task as its guides show them, `model.fit` with Adam at a constant rate (no
warmup, no decay, no label smoothing, no clipping), batches shuffled and padded to
their longest example.

    translator(vocab_size)          2 + 2 TransformerEncoder/Decoder layers, 256 wide,
                                    a TokenAndPositionEmbedding per side, a Dense
                                    projection to the vocabulary (keras.io's
                                    English-to-Spanish KerasHub guide, with a
                                    SentencePiece vocabulary shared by both sides)
    causal_lm(vocab_size)           GPT2Backbone 4 x 256 + GPT2CausalLM (no preprocessor)

Both read the token ids of the kerasllm side's own SentencePiece vocabulary, so
the two sides see the same text as the same tokens; pad id 0 (masked). Run as
bench/budget_quality.py runs it (it prints the command), e.g.

    python -m bench.plain_keras_hub --task=translation --tokenizer_file=RUN/sentencepiece.model \
        --history=keras_hub.json --train_steps=672 --eval_every=112

it writes {"records": [{"step", "train_seconds", scores...}], "test": {scores}},
scored by kerasllm's own evaluation code (translation_quality, documents_loss).
"""
import json
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from kerasllm.data import corpus
from kerasllm.data.corpus import split_documents
from kerasllm.data.lm_examples import token_stream
from kerasllm.datasets import bible_parallel
from kerasllm.evaluation.language_model import documents_loss
from kerasllm.evaluation.translation import reference_limits, translation_quality
from kerasllm.models.losses import masked_mean, sparse_cross_entropy
from kerasllm.tokenizers import SentencePieceTokenizer

FLAGS = flags.FLAGS
PAD_ID = 0
MAX_LENGTH = 128  # tokens per source, target and window, as kerasllm's trainers default
EVAL_FRACTION = 0.05  # train_gpt's default held-out share
WIDTH, INTERMEDIATE, HEADS = 256, 1024, 4


def translator(vocab_size, num_layers=2, max_length=128):
    """A keras.Model: {"source_ids" [B, S], "target_ids" [B, T]} -> logits [B, T, V];
    id 0 is padding on both sides (the embeddings' mask_zero)."""
    source = keras.Input((None,), dtype="int32", name="source_ids")
    target = keras.Input((None,), dtype="int32", name="target_ids")

    def embedding():
        return keras_hub.layers.TokenAndPositionEmbedding(vocab_size, max_length, WIDTH,
                                                          mask_zero=True)

    x = embedding()(source)
    for _ in range(num_layers):
        x = keras_hub.layers.TransformerEncoder(INTERMEDIATE, HEADS)(x)
    encoded = x
    y = embedding()(target)
    for _ in range(num_layers):
        y = keras_hub.layers.TransformerDecoder(INTERMEDIATE, HEADS)(y, encoded)
    logits = keras.layers.Dense(vocab_size)(y)
    return keras.Model({"source_ids": source, "target_ids": target}, logits)


def compile_constant_adam(model, learning_rate, weight_decay=None):
    """compile() with (W)Adam at a constant rate and the masked cross-entropy."""
    optimizer = (keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
                 if weight_decay else keras.optimizers.Adam(learning_rate))
    # Without XLA, as kerasllm's trainers train by default: with it ("auto" on
    # TensorFlow), every new batch shape (padded to its longest row) recompiles.
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                  ignore_class=PAD_ID),
                  weighted_metrics=[], jit_compile=False)
    return model


def translation_batches(source_ids, target_ids, batch_size, seed):
    """Shuffled, repeated ((sources, decoder inputs), next tokens) batches padded to
    their longest row, from int ragged [n, (tokens)] sources ("x </s>") and targets
    ("<s> y </s>")."""
    pairs = tf.data.Dataset.from_tensor_slices((source_ids, target_ids))
    pairs = pairs.shuffle(int(source_ids.nrows()), seed=seed).repeat()

    def split(sources, targets):
        sources, targets = sources.to_tensor(PAD_ID), targets.to_tensor(PAD_ID)
        return {"source_ids": sources, "target_ids": targets[:, :-1]}, targets[:, 1:]

    return pairs.ragged_batch(batch_size, drop_remainder=True).map(split).prefetch(2)


def greedy_translator(model, tokenizer, table_length=128):
    """A greedy translator with the interface of the kerasllm export's
    translate_with_options(text [N], beam_size [N], length_penalty [N], max_length
    [N]) -> {"translation": [N] bytes}, so kerasllm.evaluation.translation scores it
    as it scores kerasllm (beam_size must be 1 and length_penalty 0). It decodes as
    keras.io's guide does: keras-hub's GreedySampler rerunning the whole decoder per
    token (no cache); row i stops after max_length[i] tokens, and every row where
    <s> and its target fill the position tables (`table_length`), which also cut
    the sources."""
    sampler = keras_hub.samplers.GreedySampler()
    forward = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    bos_id, eos_id = tokenizer.bos_id, tokenizer.eos_id

    def translate_with_options(text, beam_size, length_penalty, max_length):
        if np.any(np.asarray(beam_size) != 1) or np.any(np.asarray(length_penalty) != 0):
            raise ValueError("the plain keras-hub translator decodes greedily: beam 1, "
                             "penalty 0")
        sources = framed(tokenizer, [t.decode("utf-8") for t in np.asarray(text)],
                         table_length).to_tensor(PAD_ID)
        # <s> and the target must fit the position table, as kerasllm's must.
        limits = np.minimum(np.asarray(max_length), table_length - 1)
        rows, length = int(sources.shape[0]), int(limits.max())
        prompt = tf.concat([tf.fill([rows, 1], bos_id), tf.fill([rows, length], PAD_ID)], 1)

        def next_logits(prompt, cache, index):
            logits = forward({"source_ids": sources, "target_ids": prompt})
            return logits[:, index - 1, :], None, cache

        tokens = sampler(next_logits, prompt, index=1, stop_token_ids=[eos_id],
                         mask=tf.concat([tf.ones([rows, 1], tf.bool),
                                         tf.zeros([rows, length], tf.bool)], axis=1))
        texts = []
        for row, limit in zip(np.asarray(tokens)[:, 1:].tolist(), limits):
            row = row[:limit]
            row = row[:row.index(eos_id)] if eos_id in row else row
            texts.append(tokenizer.detokenize(tf.constant([row], tf.int32)).numpy()[0]
                         if row else b"")
        return {"translation": np.array(texts, dtype=object)}

    return translate_with_options


def framed(tokenizer, texts, max_length, bos=False):
    """int32 ragged [N, (tokens)]: each text's tokens, cut to leave room, then "x </s>"
    (or "<s> x </s>" with `bos`), at most `max_length` tokens."""
    ids = tf.cast(tokenizer.tokenize(tf.constant(texts)), tf.int32)
    ids = ids[:, :max_length - 2 if bos else max_length - 1]
    rows = ids.nrows()
    ends = [tf.RaggedTensor.from_tensor(tf.fill([rows, 1], tokenizer.eos_id))]
    starts = [tf.RaggedTensor.from_tensor(tf.fill([rows, 1], tokenizer.bos_id))] if bos else []
    return tf.concat(starts + [ids] + ends, axis=1)


def causal_lm(vocab_size, max_length=512):
    """GPT2CausalLM over a 4 x 256 GPT2Backbone, no preprocessor: inputs
    {"token_ids", "padding_mask"} [B, S], logits [B, S, V]."""
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab_size, num_layers=4, num_heads=HEADS, hidden_dim=WIDTH,
        intermediate_dim=INTERMEDIATE, max_sequence_length=max_length)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def window_batches(stream, seq_length, batch_size, seed):
    """Shuffled, repeated (inputs, next tokens, weights) batches of seq_length + 1
    consecutive tokens of the int numpy stream, cut at multiples of seq_length."""
    count = (len(stream) - 1) // seq_length
    windows = np.stack([stream[i * seq_length:i * seq_length + seq_length + 1]
                        for i in range(count)]).astype("int32")
    data = tf.data.Dataset.from_tensor_slices(windows).shuffle(count, seed=seed).repeat()

    def split(window):
        inputs = window[:, :-1]
        return ({"token_ids": inputs, "padding_mask": tf.ones_like(inputs, tf.bool)},
                window[:, 1:], tf.ones_like(inputs, tf.float32))

    return data.batch(batch_size, drop_remainder=True).map(split).prefetch(2)


class ScoredCausalLM:
    """keras-hub's causal LM seen through the one method kerasllm's HeldOutLoss calls,
    so both sides' held-out loss is the same computation."""

    def __init__(self, model):
        self.model = model

    def compute_loss_and_metrics(self, batch):
        logits = self.model({"token_ids": batch["token_ids"],
                             "padding_mask": batch["padding_mask"]}, training=False)
        real = tf.cast(batch["padding_mask"], tf.float32)
        token = sparse_cross_entropy(batch["token_ids"][:, 1:], logits[:, :-1])
        return masked_mean(token.loss, real[:, 1:] * real[:, :-1]), {}


class EvaluateEvery(keras.callbacks.Callback):
    """At the end of each `fit` epoch (every `eval_every` steps) appends
    {"step", "train_seconds", **evaluate()} to `records` and rewrites `path` with
    them. train_seconds leaves out the evaluations and the first step, which traces
    the model, as kerasllm's training time does."""

    def __init__(self, evaluate, eval_every, records, path):
        super().__init__()
        self.evaluate, self.eval_every = evaluate, eval_every
        self.records, self.path = records, path
        self.seconds, self.started = 0.0, None

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.records or batch:  # not the very first (tracing) step
            self.seconds += time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        scores = self.evaluate(self.model)
        self.records.append({"step": (epoch + 1) * self.eval_every,
                             "train_seconds": self.seconds, **scores})
        logging.info("step %d: %s", self.records[-1]["step"], scores)
        write_history(self.path, self.records)


def write_history(path, records, test=None):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"records": records, "test": test or {}}, f, indent=1)


def fit_and_evaluate(model, batches, evaluate, path):
    """Trains `model` --train_steps steps (per-batch timing: steps_per_execution 1),
    evaluating every --eval_every steps; the records written to `path`."""
    records = []
    model.fit(batches, steps_per_epoch=FLAGS.eval_every,
              epochs=FLAGS.train_steps // FLAGS.eval_every, verbose=0,
              callbacks=[EvaluateEvery(evaluate, FLAGS.eval_every, records, path)])
    return records


def run_translation(tokenizer):
    """translator() on bible_parallel's training pairs (train_seq2seq's default data);
    greedy BLEU/chrF of the first --eval_sentences validation pairs at each
    evaluation and of every test pair at the end, each translation stopping at
    kerasllm's reference_limits."""
    pairs = bible_parallel.splits()
    sources, targets = pairs["train"]
    batches = translation_batches(framed(tokenizer, list(sources), MAX_LENGTH),
                                  framed(tokenizer, list(targets), MAX_LENGTH, bos=True),
                                  FLAGS.batch_size, FLAGS.seed)
    model = compile_constant_adam(translator(tokenizer.vocab_size), FLAGS.learning_rate)

    def quality(model, split, count=None):
        sources, references = (list(side[:count]) for side in pairs[split])
        result = translation_quality(
            greedy_translator(model, tokenizer, MAX_LENGTH), sources, references,
            beam_size=1, length_penalty=0.0, max_length=reference_limits(tokenizer, references))
        return {"bleu": result.bleu, "chrf": result.chrf}

    records = fit_and_evaluate(model, batches,
                               lambda m: quality(m, "validation", FLAGS.eval_sentences),
                               FLAGS.history)
    write_history(FLAGS.history, records, quality(model, "test"))


def run_language_model(tokenizer):
    """causal_lm() on the documents of --corpus less train_gpt's held-out share (its
    split at seed 0); held-out and --test_corpus bits per character."""
    documents = corpus.read_documents(FLAGS.corpus, document_per_file=True)
    train_documents, eval_documents = split_documents(documents, EVAL_FRACTION, 0)
    batches = window_batches(token_stream(train_documents, tokenizer, tokenizer.eos_id),
                             MAX_LENGTH, FLAGS.batch_size, FLAGS.seed)
    model = causal_lm(tokenizer.vocab_size)
    compile_constant_adam(model, FLAGS.learning_rate, weight_decay=0.004)

    def held_out(documents):
        return documents_loss(token_stream(documents, tokenizer, tokenizer.eos_id), documents,
                              seq_length=MAX_LENGTH, batch_size=FLAGS.batch_size)

    validation, test = held_out(eval_documents), held_out(
        corpus.read_documents(FLAGS.test_corpus, document_per_file=True))
    records = fit_and_evaluate(model, batches, lambda m: validation(ScoredCausalLM(m)),
                               FLAGS.history)
    write_history(FLAGS.history, records, test(ScoredCausalLM(model)))


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)  # before the tokenizer: it clears TF's resources
    tokenizer = SentencePieceTokenizer.from_file(FLAGS.tokenizer_file)
    {"translation": run_translation, "language_model": run_language_model}[FLAGS.task](
        tokenizer)


if __name__ == "__main__":
    flags.DEFINE_enum("task", None, ["translation", "language_model"], "What to train.")
    flags.DEFINE_string("tokenizer_file", None, "The kerasllm run's SentencePiece model.")
    flags.DEFINE_string("history", None, "Where the JSON records go.")
    flags.DEFINE_integer("train_steps", 672, "Training steps.")
    flags.DEFINE_integer("eval_every", 112, "Steps between validations.")
    flags.DEFINE_integer("batch_size", 64, "Examples per step.")
    flags.DEFINE_float("learning_rate", 5e-4, "The constant learning rate.")
    flags.DEFINE_integer("seed", 0, "Initialisation and shuffling.")
    flags.DEFINE_integer("eval_sentences", 400, "Validation pairs translated (translation).")
    flags.DEFINE_string("corpus", None, "Training documents, one per file (language_model).")
    flags.DEFINE_string("test_corpus", None, "Test documents, one per file (language_model).")
    flags.mark_flags_as_required(["task", "tokenizer_file", "history"])
    app.run(main)
