"""What the benchmarks run on each side (kerasllm, keras-hub) for each model name,
flag-free so every script shares it: the two sides' task builders and a synthetic
batch for training, the seq2seq pairs and vocabulary both sides train on, each
side's generation runner and greedy translator, and the matmul FLOPs a training
step costs (for model FLOPs utilisation); and how a script runs one measurement
in a fresh process and records where its figures were made.

Names are registry configs plus bench's own sizes in WIDER, which are no registry
entries (the trainers do not know them): gpt_4x512 is gpt_tiny widened to 4 layers
of 512 (8 heads, FFN 2048, same vocabulary).
"""
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import keras_hub
import numpy as np
import tensorflow as tf

from bench.keras_hub_reference import (KerasHubBertClassifier, KerasHubBertPretrainer,
                                       KerasHubGptCausalLM, check_expressible,
                                       keras_hub_backbone,
                                       keras_hub_gpt2_causal_lm, text_inputs as bert_inputs)
from bench.keras_hub_seq2seq import KerasHubSeq2SeqLM, source_batch, strip
from kerasllm.datasets import bible_parallel
from kerasllm.evaluation.translation import greedy_translator
from kerasllm.generation import Prompts, beam_search, generate, left_pad
from kerasllm.models import (BertEncoder, BertPretrainer, GptCausalLM, GptDecoder,
                             registry)
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.seq2seq import Seq2SeqLM, Seq2SeqTransformer
from kerasllm.tokenizers import train_sentencepiece

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS, THEIRS = "kerasllm", "keras-hub"
# num_key_value_heads too: replace() would keep gpt_tiny's 2, grouped-query attention.
WIDER = {"gpt_4x512": ("gpt_tiny", dict(num_layers=4, hidden_size=512, num_heads=8,
                                        num_key_value_heads=8, intermediate_size=2048))}
NUM_PREDICTIONS = 20  # masked positions per BERT example


def model_config(name):
    if name in WIDER:
        base, changes = WIDER[name]
        return registry.get(base).replace(**changes)
    return registry.get(name)


def family(name):
    """"bert", "gpt" or "seq2seq"; registry.UnknownModelError for an unknown name."""
    return registry.lookup(WIDER[name][0] if name in WIDER else name)[0].name


def describe_wider(names):
    """One sentence per name of `names` that is bench's own size, not a registry name."""
    return [f"{name} is bench's own size, not a registry name: {WIDER[name][0]} with "
            + ", ".join(f"{k}={v}" for k, v in WIDER[name][1].items())
            + " (bench/cases.py)." for name in names if name in WIDER]


def timed(call):
    """(call's result, seconds)."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


# --- fresh processes and where figures were made ----------------------------------------

class BenchmarkError(RuntimeError):
    pass


def last_json_line(command, what):
    """The JSON last line `command` prints; BenchmarkError naming `what` if it fails."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BenchmarkError(f"measuring {what} failed (exit {result.returncode}):\n"
                             f"{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def machine():
    """'<lscpu model name>, <n> cores' (the platform's processor where lscpu is missing)."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown processor"
    return f"{model}, {os.cpu_count()} cores"


def made_by(module):
    """{"command", "date", "machine"}: this process's command line as `python -m
    module ...`, today and the machine, what a recorded figure says of its making."""
    return {"command": shlex.join(["python", "-m", module, *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(), "machine": machine()}


# --- training ---------------------------------------------------------------------------

def text_inputs(vocab_size, rng, batch_size, seq_length):
    """BERT's token_ids (random), segment_ids (two halves) and an all-ones padding_mask,
    int32 [batch_size, seq_length]."""
    b, s = batch_size, seq_length
    return {
        "token_ids": rng.integers(5, vocab_size, (b, s)).astype("int32"),
        "segment_ids": np.repeat([[0] * (s // 2) + [1] * (s - s // 2)], b, 0).astype("int32"),
        "padding_mask": np.ones((b, s), "int32"),
    }


def seq2seq_builders(config):
    """{OURS: Seq2SeqLM, THEIRS: KerasHubSeq2SeqLM} builders at a Seq2SeqConfig."""
    return {OURS: lambda: Seq2SeqLM(Seq2SeqTransformer(config)),
            THEIRS: lambda: KerasHubSeq2SeqLM(config)}


def training_case(name, batch_size, seq_length, num_predictions=NUM_PREDICTIONS):
    """({OURS: build, THEIRS: build}, batch): task builders of both sides at config
    `name` and one synthetic batch (numpy, seed 0) both train on. A seq2seq batch
    has `seq_length` source and `seq_length` target tokens per example; a BERT
    example masks `num_predictions` of its tokens, or all but [CLS] when shorter."""
    config = model_config(name)
    rng = np.random.default_rng(0)
    b, s, v = batch_size, seq_length, config.vocab_size
    kind = family(name)
    if kind == "bert":
        p = min(num_predictions, s - 1)
        batch = text_inputs(v, rng, b, s) | {
            "masked_positions": np.sort([rng.choice(np.arange(1, s), p, replace=False)
                                         for _ in range(b)], -1).astype("int32"),
            "masked_ids": rng.integers(5, v, (b, p)).astype("int32"),
            "masked_weights": np.ones((b, p), "float32"),
            "next_sentence_labels": rng.integers(0, 2, (b,)).astype("int32"),
        }
        return {OURS: lambda: BertPretrainer(BertEncoder(config)),
                THEIRS: lambda: KerasHubBertPretrainer(config)}, batch
    if kind == "gpt":
        batch = {"token_ids": rng.integers(5, v, (b, s)).astype("int32"),
                 "padding_mask": np.ones((b, s), "int32")}
        return {OURS: lambda: GptCausalLM(GptDecoder(config)),
                THEIRS: lambda: KerasHubGptCausalLM(config)}, batch
    batch = {"source_ids": rng.integers(5, v, (b, s)).astype("int32"),
             "source_padding_mask": np.ones((b, s), "int32"),
             "target_ids": rng.integers(5, v, (b, s)).astype("int32"),
             "target_padding_mask": np.ones((b, s), "int32")}
    return seq2seq_builders(config), batch


def keras_hub_llama_causal_lm(config):
    """keras-hub's LlamaCausalLM (no preprocessor) at a Llama-style kerasllm GptConfig
    (rotary positions, RMSNorm, SwiGLU, no biases). keras-hub's Llama has one dropout
    rate and no position limit (rotary positions need no table)."""
    expected = {"norm": "rms_norm", "feed_forward": "swiglu", "use_bias": False,
                "attention_dropout": config.dropout}
    check_expressible(config, expected, "LlamaBackbone")
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_layers,
        num_query_heads=config.num_heads, num_key_value_heads=config.num_key_value_heads,
        hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size,
        rope_max_wavelength=config.rope_theta, layer_norm_epsilon=config.norm_epsilon,
        dropout=config.dropout, tie_word_embeddings=config.tie_embeddings)
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor=None)


def keras_hub_fit_case(name, batch):
    """(build, element): keras-hub's own task at config `name`, as its `fit` trains it
    (compiled with its default loss and weighted metrics), and training_case's
    `batch` as the (x, y, sample_weight) element it takes. GPT: GPT2CausalLM (a
    Llama-style config, rotary positions: LlamaCausalLM) on the token ids, each row
    continued by its own first token (keras-hub's batches hold the S targets
    apart). BERT: BertMaskedLM on the same masked positions, ids and
    weights; it has no next-sentence head (keras-hub has no BERT pretraining task
    with one), which costs one [CLS] pooler and a Dense(2) per example."""
    config = model_config(name)
    kind = family(name)
    if kind == "gpt":
        token_ids = batch["token_ids"]
        targets = np.concatenate([token_ids[:, 1:], token_ids[:, :1]], 1)
        features = {"token_ids": token_ids, "padding_mask": batch["padding_mask"]}
        build = (keras_hub_llama_causal_lm if config.position_embedding == "rotary"
                 else keras_hub_gpt2_causal_lm)
        return (lambda: build(config), (features, targets, np.ones_like(targets, "float32")))
    if kind == "bert":
        features = bert_inputs(batch) | {"mask_positions": batch["masked_positions"]}
        return (lambda: keras_hub.models.BertMaskedLM(keras_hub_backbone(config),
                                                      preprocessor=None),
                (features, batch["masked_ids"], batch["masked_weights"]))
    raise ValueError(f"no keras-hub fit case for {name}, a {kind} model")


def classification_case(name, batch_size, seq_length, num_classes):
    """({OURS: build, THEIRS: build}, batch): BERT sequence classifiers of both sides
    at config `name` (the [CLS] pooler, dropout, one Dense; no keras-hub
    preprocessor) and one synthetic batch (seed 0) of `num_classes` labels."""
    config = registry.get(name)
    rng = np.random.default_rng(0)
    batch = text_inputs(config.vocab_size, rng, batch_size, seq_length)
    batch["labels"] = rng.integers(0, num_classes, (batch_size,)).astype("int32")
    return {OURS: lambda: BertClassifier(BertEncoder(config), num_classes, pooling="cls"),
            THEIRS: lambda: KerasHubBertClassifier(config, num_classes)}, batch


def _layer_flops(h, kv, ffn_matmuls, i, query_tokens, key_tokens):
    """Forward matmul FLOPs of one attention + feed-forward layer per query token:
    the query and output projections, the key/value projections (per key token,
    charged to the query tokens' share), scores and weighted values, the FFN."""
    projections = 2 * 2 * h * h + 2 * 2 * h * kv * key_tokens / query_tokens
    attention = 2 * 2 * key_tokens * h
    return projections + attention + ffn_matmuls * 2 * h * i


def training_flops_per_token(name, seq_length, num_predictions=NUM_PREDICTIONS):
    """Matmul FLOPs of one training step per counted token (forward x 3: the backward
    pass costs two forwards), as the model is defined, whatever its implementation
    computes besides (padding, masked-out attention, elementwise ops). Tokens are
    counted as the training loop counts them (a seq2seq example counts its source
    and target tokens)."""
    config = model_config(name)
    s, kind = seq_length, family(name)
    h, v, i = config.hidden_size, config.vocab_size, config.intermediate_size
    if kind == "bert":
        layer = _layer_flops(h, h, 2, i, s, s)
        # MLM head (transform + vocabulary) at the masked positions; pooler + NSP once.
        heads = (min(num_predictions, s - 1) * 2 * (h * h + h * v) + 2 * (h * h + 2 * h)) / s
        forward = config.num_layers * layer + heads
    elif kind == "gpt":
        kv = h * config.num_key_value_heads // config.num_heads
        ffn = 3 if config.feed_forward == "swiglu" else 2
        forward = config.num_layers * _layer_flops(h, kv, ffn, i, s, s) + 2 * h * v
    else:
        encoder = config.num_encoder_layers * _layer_flops(h, h, 2, i, s, s)
        # decoder: self-attention + FFN, and cross-attention over the source (no FFN).
        decoder = config.num_decoder_layers * (
            _layer_flops(h, h, 2, i, s, s) + _layer_flops(h, h, 0, i, s, s))
        forward = (encoder + decoder + 2 * h * v) / 2  # per source-or-target token
    return 3 * forward


# --- seq2seq data -----------------------------------------------------------------------

def bible_pairs(train_pairs=None):
    """bible_parallel.splits(), the training pairs cut to the first `train_pairs`."""
    pairs = bible_parallel.splits()
    if train_pairs:
        pairs["train"] = tuple(side[:train_pairs] for side in pairs["train"])
    return pairs


def shared_vocabulary(train, vocab_size):
    """One SentencePiece model from both sides of the training pairs, as
    trainers/train_seq2seq.py learns it."""
    sources, targets = train
    return train_sentencepiece([*sources, *targets], vocab_size=vocab_size)


# --- generation -------------------------------------------------------------------------

def produced(label, count, expected):
    if count != expected:
        raise AssertionError(f"{label} produced {count} new tokens, not {expected}")
    return count


def random_model(build, eos_id):
    """A freshly built model of either side and family whose tied </s> embedding row
    is zero: its logit is then 0, below the best of thousands of random logits, so
    no decoding ends early."""
    model = build()
    model.build_for_inputs()
    # kerasllm's tasks hold the table in their backbone; keras-hub's seq2seq holds it.
    table = getattr(model, "backbone", model).token_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(
        table, [[eos_id]], tf.zeros([1, table.shape[1]], table.dtype)))
    return model


def gpt_generation_runner(name, side, batch_size, prompt_length, new_tokens,
                          jit_compile=True):
    """A callable -> new tokens/s of one side greedy-continuing the same random prompts
    (seed 1), random weights, traced (and compiled with XLA) by a first untimed call:
    kerasllm.generation.generate given GptCausalLM.decoding_weights(), or keras-hub's
    GPT2CausalLM.generate (greedy sampler, stop_token_ids=None)."""
    config = model_config(name)
    b, p, n = batch_size, prompt_length, new_tokens
    prompt_ids = np.random.default_rng(1).integers(5, config.vocab_size, (b, p)).astype("int32")
    if side == OURS:
        model = GptCausalLM(GptDecoder(config)).build_for_inputs()
        prompts = left_pad(tf.constant(prompt_ids), tf.fill([b], p))

        @tf.function(jit_compile=jit_compile, autograph=False)  # explicit TF control flow
        def ours_generate(prompts):
            generated = generate(model.generation_step, model.init_cache, prompts, n,
                                 weights=model.decoding_weights())
            return generated.token_ids, generated.lengths

        def run():
            (_, lengths), seconds = timed(lambda: [t.numpy() for t in ours_generate(prompts)])
            return produced(OURS, int(lengths.sum()), b * n) / seconds
    else:
        model = keras_hub_gpt2_causal_lm(config)
        model.compile(sampler="greedy", jit_compile=jit_compile)
        # Right-padded to prompt + new tokens: keras-hub fills every padding slot.
        inputs = {"token_ids": tf.constant(np.pad(prompt_ids, [(0, 0), (0, n)])),
                  "padding_mask": tf.constant(np.pad(np.ones_like(prompt_ids),
                                                     [(0, 0), (0, n)]))}

        def run():
            out, seconds = timed(lambda: model.generate(inputs, stop_token_ids=None))
            if not np.array_equal(out["token_ids"][:, :p], prompt_ids):
                raise AssertionError("keras-hub changed the prompt")
            new = np.logical_and(np.asarray(out["padding_mask"], bool),
                                 ~np.asarray(inputs["padding_mask"], bool))
            return produced(THEIRS, int(new.sum()), b * n) / seconds
    run()
    return run


def seq2seq_decode_runner(build, side, source_ids, source_mask, *, bos_id, eos_id, pad_id,
                          new_tokens, beam_size, jit_compile=True, source_in_cache=True):
    """A callable -> sentences/s of one side's beam search over the same sources
    (int32 [N, S] and their mask), `new_tokens` target tokens each (checked), traced
    and compiled by a first untimed call: kerasllm.generation.beam_search over
    Seq2SeqLM's cached step, or keras_hub.samplers.BeamSampler over
    KerasHubSeq2SeqLM's cached decoder (source_in_cache: see its `decode`)."""
    model = random_model(build, eos_id)
    rows, n = int(source_ids.shape[0]), new_tokens
    if side == OURS:
        start = Prompts(tf.fill([rows, 1], tf.cast(bos_id, tf.int32)), tf.ones([rows], tf.int32))

        @tf.function(jit_compile=jit_compile, autograph=False)
        def decode(source_ids, source_mask):
            found = beam_search(model.generation_step, model.init_cache, start, n, beam_size,
                                stop_token_ids=tf.constant([eos_id], tf.int32), pad_id=pad_id,
                                context=model.encode_context(source_ids, source_mask))
            return found.lengths[:, 0]

        def count(lengths):
            return int(lengths.sum())
    else:
        sampler = keras_hub.samplers.BeamSampler(num_beams=beam_size)

        @tf.function(jit_compile=jit_compile, autograph=False)
        def decode(source_ids, source_mask):
            return model.decode(source_ids, source_mask, max_length=n + 1, sampler=sampler,
                                bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                                source_in_cache=source_in_cache)

        def count(token_ids):
            new = token_ids[:, 1:]
            return int(new.size - (new == eos_id).sum())

    def run():
        out, seconds = timed(lambda: decode(source_ids, source_mask).numpy())
        produced(side, count(out), rows * n)
        return rows / seconds

    run()
    return run


def seq2seq_translator(side, model, tokenizer, max_length):
    """One side's greedy translator with the interface of the export's
    `translate_with_options(text [N], beam_size [N], length_penalty [N], max_length
    [N]) -> {"translation": [N] bytes}`, so kerasllm.evaluation.translation scores
    both alike (beam_size must be 1 and length_penalty 0: greedy decoding).
    kerasllm: evaluation.translation.greedy_translator (the export's own signature);
    keras-hub: keras_hub.samplers.GreedySampler over KerasHubSeq2SeqLM's cached
    decoder, decoding the batch to its longest max_length and cutting each row to
    its own (greedy tokens do not depend on how far decoding goes)."""
    if side == OURS:
        return greedy_translator(model, tokenizer, max_source_length=max_length,
                                 max_target_length=max_length)
    sampler = keras_hub.samplers.GreedySampler()

    @tf.function(autograph=False)
    def decode(source_ids, source_mask, length):
        # length + 1: <s> and `length` target tokens.
        return model.decode(source_ids, source_mask, max_length=length + 1, sampler=sampler,
                            bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                            pad_id=tokenizer.pad_id)

    def translate_with_options(text, beam_size, length_penalty, max_length_per_row):
        if np.any(beam_size.numpy() != 1) or np.any(length_penalty.numpy() != 0):
            raise ValueError("the keras-hub translator decodes greedily: beam 1, penalty 0")
        limits = max_length_per_row.numpy()
        texts = [t.decode("utf-8") for t in text.numpy()]
        source_ids, source_mask = source_batch(tokenizer, texts, max_length)
        rows = strip(decode(source_ids, source_mask, int(limits.max())), tokenizer.eos_id)
        rows = [row[:limit] for row, limit in zip(rows, limits)]
        ragged = tf.RaggedTensor.from_row_lengths(
            tf.constant([t for row in rows for t in row], tf.int32),
            tf.constant([len(row) for row in rows], tf.int64))
        return {"translation": tokenizer.detokenize(ragged).numpy()}

    return translate_with_options
