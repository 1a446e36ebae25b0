"""BERT pretraining throughput of TF Model Garden, the "Model Garden" column.

Times training steps of Model Garden's own BERT pretraining model:
`official.nlp.modeling.networks.BertEncoder` under `models.BertPretrainerV2`,
with Model Garden's MaskedLM head and a `layers.ClassificationHead` named
"next_sentence" for next-sentence prediction, built the way Model Garden's
masked-LM task builds it. The optimizer is Model Garden's AdamWeightDecay
(its "adamw" optimizer type: lr 1e-4, weight decay 0.01 except on LayerNorm
and bias weights, epsilon 1e-6, global-norm clipping at 1.0).

Model and batch follow bench/bert_pretraining_throughput.py: one fixed synthetic
batch (numpy seed 0) of 16 x 128 tokens with 20 masked positions per example
(distinct here, drawn with replacement in bench/cases.py: the same work either
way), loss = weighted-mean MLM cross-entropy + mean NSP cross-entropy, in
float32. Under --precision=mixed_bfloat16, Model Garden keeps its layer norms
(so each block's output) in float32 and computes the dense layers in bfloat16.
As in kerasllm's training loop, one call of a tf.function runs
--steps_per_round steps in a tf.range loop (no Python per step); --jit_compile
applies XLA to each step's forward and backward pass, and the optimizer update
runs outside XLA. One untimed call traces and compiles, then --rounds timed
calls each give tokens/s = batch * seq * steps / seconds.

Model Garden pins Keras 2 (tf-keras) and absl-py < 2, so it cannot share the
project's virtual environment. This script imports only the standard library,
numpy, TensorFlow, tf-keras and Model Garden, and runs in a venv of its own:

    python3 -m venv .venv-model-garden
    .venv-model-garden/bin/pip install tf-models-official==2.20.0

Run it from the repository root:

    .venv-model-garden/bin/python bench/model_garden_bert.py --model=bert_tiny --jit_compile=off
    .venv-model-garden/bin/python bench/model_garden_bert.py --model=bert_small \\
        --jit_compile=on --precision=mixed_bfloat16 --rounds=5

Stdout gets exactly one JSON line:
    {"side": "model-garden", "model": ..., "precision": ..., "jit_compile": ...,
     "unit": "tokens/s", "values": [one per round], "trainable_parameters": N}
and everything else (TensorFlow's logs) goes to stderr. On failure the exit
status is nonzero and stderr ends with one "model_garden_bert: error: ..." line.

trainable_parameters counts every trainable variable of the model, including
the encoder's pooler: Model Garden's NSP head has its own dense layer on the
[CLS] vector and does not use that pooler, which therefore gets no gradient
and is not updated (stderr reports the count of the variables trained).
"""
import argparse
import json
import os
import sys
import time

SIDE = "model-garden"

# The configs of kerasllm's registry (bert_tiny / bert_small) in Model Garden's
# argument names; the rest is shared.
MODELS = {
    "bert_tiny": dict(num_layers=2, hidden_size=128, num_attention_heads=2, inner_dim=512),
    "bert_small": dict(num_layers=4, hidden_size=512, num_attention_heads=8, inner_dim=2048),
}
SHARED = dict(vocab_size=30522, max_sequence_length=512, type_vocab_size=2,
              output_dropout=0.1, attention_dropout=0.1)
INITIALIZER_STDDEV = 0.02
# (Model Garden's layer norms use epsilon 1e-12 throughout, BERT's value.)

LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.01
ADAM_EPSILON = 1e-6
CLIP_NORM = 1.0
FIRST_TOKEN_ID = 5  # ids below it stand for special tokens


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        fail(message, status=2)


def fail(message, status=1):
    print(f"model_garden_bert: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def parse_args(argv):
    parser = _Parser(description="Training throughput of Model Garden's BERT pretrainer.")
    parser.add_argument("--model", choices=sorted(MODELS), default="bert_tiny")
    parser.add_argument("--jit_compile", choices=["on", "off"], default="off",
                        help="XLA for each step's forward and backward pass.")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16"],
                        default="float32")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds.")
    parser.add_argument("--steps_per_round", type=int, default=10,
                        help="Training steps per tf.function call (one round).")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--num_predictions", type=int, default=20,
                        help="Masked positions per example.")
    args = parser.parse_args(argv)
    for name in ("rounds", "steps_per_round", "batch_size", "num_predictions"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 2 <= args.seq_length <= SHARED["max_sequence_length"]:
        parser.error(f"--seq_length must be in [2, {SHARED['max_sequence_length']}], "
                     f"got {args.seq_length}")
    if args.num_predictions > args.seq_length - 1:
        parser.error(f"--num_predictions must be at most seq_length - 1 = "
                     f"{args.seq_length - 1} (distinct positions after [CLS])")
    return args


def synthetic_batch(np, batch_size, seq_length, num_predictions, vocab_size):
    """One batch of numpy arrays in Model Garden's feature names (seed 0)."""
    rng = np.random.default_rng(0)
    b, s, p = batch_size, seq_length, num_predictions
    positions = np.stack([np.sort(rng.choice(np.arange(1, s), p, replace=False))
                          for _ in range(b)])
    return {
        "input_word_ids": rng.integers(FIRST_TOKEN_ID, vocab_size, (b, s)).astype("int32"),
        "input_type_ids": np.repeat([[0] * (s // 2) + [1] * (s - s // 2)], b, 0)
        .astype("int32"),
        "input_mask": np.ones((b, s), "int32"),
        "masked_lm_positions": positions.astype("int32"),
        "masked_lm_ids": rng.integers(FIRST_TOKEN_ID, vocab_size, (b, p)).astype("int32"),
        "masked_lm_weights": np.ones((b, p), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (b,)).astype("int32"),
    }


def run(args):
    import numpy as np
    import tensorflow as tf
    import tf_keras
    from official.modeling.optimization import legacy_adamw
    from official.nlp.modeling import layers, models, networks

    tf_keras.mixed_precision.set_global_policy(args.precision)

    def exact_gelu(x):
        return tf.nn.gelu(x, approximate=False)

    def initializer():
        return tf_keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV)

    config = dict(SHARED, **MODELS[args.model])
    encoder = networks.BertEncoder(
        inner_activation=exact_gelu, initializer=initializer(), dict_outputs=True,
        **config)
    nsp_head = layers.ClassificationHead(
        inner_dim=config["hidden_size"], num_classes=2,
        dropout_rate=SHARED["output_dropout"], initializer=initializer(),
        name="next_sentence")
    model = models.BertPretrainerV2(
        encoder_network=encoder, mlm_activation=exact_gelu,
        mlm_initializer=initializer(), classification_heads=[nsp_head])

    batch = synthetic_batch(np, args.batch_size, args.seq_length, args.num_predictions,
                            config["vocab_size"])
    model_inputs = ("input_word_ids", "input_type_ids", "input_mask", "masked_lm_positions")
    model({k: tf.constant(batch[k][:1]) for k in model_inputs})  # creates the MLM head
    variables = model.trainable_variables
    num_parameters = sum(int(np.prod(v.shape)) for v in variables)

    def loss_fn(features):
        outputs = model({k: features[k] for k in model_inputs}, training=True)
        mlm_losses = tf_keras.losses.sparse_categorical_crossentropy(
            features["masked_lm_ids"], tf.cast(outputs["mlm_logits"], tf.float32),
            from_logits=True)
        weights = features["masked_lm_weights"]
        mlm_loss = tf.math.divide_no_nan(tf.reduce_sum(mlm_losses * weights),
                                         tf.reduce_sum(weights))
        nsp_loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
            features["next_sentence_labels"],
            tf.cast(outputs["next_sentence"], tf.float32), from_logits=True))
        return mlm_loss + nsp_loss

    # Which variables the loss reaches (not the encoder's unused pooler).
    with tf.GradientTape() as tape:
        probe_loss = loss_fn({k: tf.constant(v) for k, v in batch.items()})
    reached = [g is not None for g in tape.gradient(probe_loss, variables)]
    trained = [v for v, r in zip(variables, reached) if r]
    print(f"{args.model}: {num_parameters:,} trainable parameters, "
          f"{sum(int(np.prod(v.shape)) for v in trained):,} of them reached by the loss; "
          f"not reached: {[v.name for v, r in zip(variables, reached) if not r]}",
          file=sys.stderr, flush=True)

    optimizer = legacy_adamw.AdamWeightDecay(
        learning_rate=LEARNING_RATE, epsilon=ADAM_EPSILON, weight_decay_rate=WEIGHT_DECAY,
        exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"],
        gradient_clip_norm=CLIP_NORM)

    @tf.function(jit_compile=args.jit_compile == "on")
    def gradients(features):
        with tf.GradientTape() as tape:
            loss = loss_fn(features)
        return loss, tape.gradient(loss, trained)

    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(dataset)

    @tf.function
    def train_steps(iterator, num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            loss, grads = gradients(next(iterator))
            # Embedding gradients come as IndexedSlices; as in kerasllm's loop,
            # made dense once before clipping and the Adam step.
            grads = [tf.convert_to_tensor(g) for g in grads]
            optimizer.apply_gradients(zip(grads, trained))
        return loss

    steps = tf.constant(args.steps_per_round)
    tokens = args.batch_size * args.seq_length * args.steps_per_round
    first_loss = float(train_steps(iterator, steps))  # trace and compile, untimed
    speeds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        loss = float(train_steps(iterator, steps))  # the fetch waits for the steps
        speeds.append(tokens / (time.perf_counter() - start))
    if not (np.isfinite(first_loss) and np.isfinite(loss)):
        raise FloatingPointError(f"non-finite loss: {first_loss} after the warm-up call, "
                                 f"{loss} after the last round")
    print(f"loss {first_loss:.4f} after the warm-up call, {loss:.4f} after the last round",
          file=sys.stderr, flush=True)
    return {"side": SIDE, "model": args.model, "precision": args.precision,
            "jit_compile": args.jit_compile, "unit": "tokens/s", "values": speeds,
            "trainable_parameters": num_parameters}


def prepare_process():
    """Before TensorFlow is imported (run() imports it): tf.keras is to be tf-keras
    (Keras 2) like Model Garden's own imports, TensorFlow's C++ info lines are left
    out, and the project's bench/ modules (timing, cases, ...), first on sys.path
    as this script's folder, must not shadow anything imported."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]


def main(argv):
    args = parse_args(argv)
    prepare_process()
    # Only the result goes to the real stdout: while the model is built and
    # trained, file descriptor 1 (Python's and C++'s prints) points at stderr.
    sys.stdout.flush()
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        result = run(args)
    except Exception as error:  # one line, whatever failed
        sys.stdout.flush()
        fail(f"{type(error).__name__}: {' '.join(str(error).split())}")
    sys.stdout.flush()
    result_out.write(json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
