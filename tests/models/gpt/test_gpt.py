"""The GPT family: named sizes and their parameter counts, the causal-LM loss, layer
depths, training, and cached decoding steps against the full forward pass."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.models import GptCausalLM, GptConfig, GptDecoder, registry
from kerasllm.models.gpt import positions_from_padding_mask
from kerasllm.models.losses import masked_mean
from tests.roundtrip import config_roundtrip


def parameter_count(config):
    """The weights a GptConfig implies, counted from the architecture's equations."""
    h, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * config.head_size
    bias = config.use_bias
    attention = 2 * h * h + 2 * h * kv + bias * (2 * h + 2 * kv)
    if config.feed_forward == "gelu_mlp":
        feed_forward = 2 * h * f + bias * (f + h)
    else:
        feed_forward = 3 * h * f + bias * (2 * f + h)
    norm = 2 * h if config.norm == "layer_norm" else h
    block = attention + feed_forward + 2 * norm
    embeddings = v * h + (config.max_sequence_length * h
                          if config.position_embedding == "learned" else 0)
    head = 0 if config.tie_embeddings else v * h
    return embeddings + config.num_layers * block + norm + head


PUBLISHED = {"gpt2_small": 124_439_808, "gpt2_medium": 354_823_168,
             "smollm2_135m": 134_515_008}


def test_registry_names_and_family():
    assert registry.model_names("gpt") == ["gpt2_medium", "gpt2_small", "gpt_mini",
                                           "gpt_tiny", "llama_mini", "llama_tiny",
                                           "smollm2_135m"]
    family, config = registry.lookup("smollm2_135m")
    assert family.name == "gpt" and family.tokenizer_kind == "sentencepiece"
    assert family.backbone_class is GptDecoder and isinstance(config, GptConfig)
    assert (config.num_heads, config.num_key_value_heads, config.rope_theta) == (9, 3, 1e5)
    # The from-scratch Llama sizes: GPT-2's shapes with a SwiGLU net of about the same
    # weights (8/3 of the width, a multiple of 16) and no dropout.
    tiny, mini = registry.get("llama_tiny"), registry.get("llama_mini")
    assert (tiny.intermediate_size, mini.intermediate_size) == (352, 688)
    assert mini.dropout == mini.attention_dropout == 0.0 and not mini.use_bias


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts_from_the_equations(name):
    assert parameter_count(registry.get(name)) == PUBLISHED[name]


LLAMA_TINY = dict(num_layers=2, vocab_size=97, max_sequence_length=64, dropout=0.0,
                  attention_dropout=0.0)


@pytest.mark.parametrize("config", [
    registry.get("gpt_tiny"), registry.get("gpt_mini"),
    registry.get("gpt_tiny").replace(tie_embeddings=False),
    registry.get("smollm2_135m").replace(**LLAMA_TINY),
], ids=["gpt_tiny", "gpt_mini", "gpt_tiny_untied", "smollm2_2_layers"])
def test_the_equations_count_what_is_built(config):
    model = GptCausalLM(GptDecoder(config)).build_for_inputs()
    assert model.count_params() == parameter_count(config)


@pytest.mark.slow  # builds 124M, 135M and 355M weights
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts_built(name):
    assert GptCausalLM.from_name(name).build_for_inputs().count_params() == PUBLISHED[name]


def test_config_fills_key_value_heads_and_refuses_unknown_choices():
    assert GptConfig(num_layers=1, hidden_size=8, num_heads=2,
                     intermediate_size=8).num_key_value_heads == 2
    with pytest.raises(ValueError, match="position_embedding must be one of"):
        GptConfig(num_layers=1, hidden_size=8, num_heads=2, intermediate_size=8,
                  position_embedding="alibi")
    with pytest.raises(ValueError, match="num_heads 4 is not a multiple of num_key_value_"):
        GptConfig(num_layers=1, hidden_size=12, num_heads=4, num_key_value_heads=3,
                  intermediate_size=8)


KINDS = {
    "gpt2": dict(name="gpt_tiny", vocab_size=61, hidden_size=32, num_heads=4,
                 intermediate_size=64, max_sequence_length=32, dropout=0.0,
                 attention_dropout=0.0),
    "llama": dict(name="smollm2_135m", num_layers=2, vocab_size=61, hidden_size=32,
                  num_heads=4, num_key_value_heads=2, intermediate_size=48,
                  max_sequence_length=32),
}


def tiny_lm(kind, **overrides):
    settings = dict(KINDS[kind], **overrides)
    return GptCausalLM.from_name(settings.pop("name"), **settings).build_for_inputs()


def left_padded_batch():
    mask = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
                     [0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], "int32")
    ids = np.random.default_rng(1).integers(3, 61, mask.shape).astype("int32") * mask
    return {"token_ids": ids, "padding_mask": mask}


def test_loss_and_metrics_on_a_tiny_batch():
    model = tiny_lm("gpt2")
    batch = {"token_ids": np.array([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]], "int32"),
             "padding_mask": np.array([[1, 1, 1, 1, 0, 0], [1] * 6], "int32")}
    loss, metrics = model.compute_loss_and_metrics(batch)
    assert set(metrics) == {"accuracy", "perplexity"}
    assert abs(float(loss) - np.log(61)) < 0.5  # untrained: near uniform
    np.testing.assert_allclose(float(metrics["perplexity"]), np.exp(float(loss)), rtol=1e-6)

    logits = np.asarray(model(batch)["logits"], "float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # 3 predictions in row 0 (targets 6, 7, 8), 5 in row 1.
    picked = [log_probs[0, t, batch["token_ids"][0, t + 1]] for t in range(3)] + \
             [log_probs[1, t, batch["token_ids"][1, t + 1]] for t in range(5)]
    np.testing.assert_allclose(float(loss), -np.mean(picked), rtol=1e-5)
    hits = [np.argmax(logits[0, t]) == batch["token_ids"][0, t + 1] for t in range(3)] + \
           [np.argmax(logits[1, t]) == batch["token_ids"][1, t + 1] for t in range(5)]
    np.testing.assert_allclose(float(metrics["accuracy"]), np.mean(hits), rtol=1e-6)


def test_left_padding_first_token_is_not_a_target():
    model = tiny_lm("llama")
    batch = left_padded_batch()
    changed = {**batch, "token_ids": batch["token_ids"].copy()}
    changed["token_ids"][0, 3] = 60  # row 0's first real token: only ever an input
    loss = model.compute_loss_and_metrics(batch)[0]
    assert float(loss) != pytest.approx(float(model.compute_loss_and_metrics(changed)[0]))
    # Padding ids change nothing at all.
    changed = {**batch, "token_ids": batch["token_ids"] + 7 * (1 - batch["padding_mask"])}
    np.testing.assert_allclose(float(model.compute_loss_and_metrics(changed)[0]),
                               float(loss), rtol=1e-6)


def sliced_loss_and_accuracy(model, batch):
    """The loss and accuracy as first written: the logits without their last
    position against the tokens from the second on, and an argmax."""
    logits = model(batch)["logits"][:, :-1]
    targets = batch["token_ids"][:, 1:]
    real = tf.cast(batch["padding_mask"], tf.float32)
    weights = real[:, 1:] * real[:, :-1]
    losses = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    correct = tf.argmax(logits, -1, output_type=tf.int32) == targets
    return masked_mean(losses, weights), masked_mean(correct, weights)


def half_greedy_batch(model):
    """Left-padded, right-padded and full rows in which every other token is the
    model's own argmax after the tokens before it: an accuracy near 1/2, not 0."""
    batch = left_padded_batch()
    batch = {"token_ids": np.concatenate([batch["token_ids"], batch["token_ids"][2:]]),
             "padding_mask": np.concatenate([batch["padding_mask"],
                                             [[1] * 6 + [0] * 4]]).astype("int32")}
    for t in range(0, batch["token_ids"].shape[1] - 1, 2):
        logits = np.asarray(model(batch)["logits"])
        batch["token_ids"][:, t + 1] = logits[:, t].argmax(-1)
    return batch


@pytest.mark.parametrize("kind, tied", [("gpt2", True), ("llama", False)])
def test_loss_accuracy_and_gradients_equal_the_sliced_formulation(kind, tied):
    model = tiny_lm(kind, tie_embeddings=tied)
    batch = half_greedy_batch(model)
    with tf.GradientTape(persistent=True) as tape:
        loss, metrics = model.compute_loss_and_metrics(batch)
        sliced_loss, sliced_accuracy = sliced_loss_and_accuracy(model, batch)
    np.testing.assert_allclose(float(loss), float(sliced_loss), rtol=1e-6)
    assert 0.3 < float(sliced_accuracy) < 0.7
    assert float(metrics["accuracy"]) == float(sliced_accuracy)
    for grad, sliced_grad in zip(tape.gradient(loss, model.trainable_variables),
                                 tape.gradient(sliced_loss, model.trainable_variables)):
        np.testing.assert_allclose(tf.convert_to_tensor(grad),
                                   tf.convert_to_tensor(sliced_grad), atol=1e-7)


def test_layer_depths():
    model = tiny_lm("gpt2", tie_embeddings=False)
    backbone = model.backbone
    assert backbone.num_layers == 2
    assert backbone.layer_depth(backbone.token_embedding.embeddings) == 0
    assert backbone.layer_depth(backbone.position_embedding.embeddings) == 0
    assert backbone.layer_depth(backbone.block_0.self_attention.query_dense.kernel) == 1
    assert backbone.layer_depth(backbone.block_1.feed_forward_norm.gamma) == 2
    assert backbone.layer_depth(backbone.final_norm.gamma) == 3
    assert backbone.layer_depth(model.lm_head.kernel) is None  # a head: above the top
    every_weight = [backbone.layer_depth(w) for w in backbone.weights]
    assert None not in every_weight


def test_tied_and_untied_output_projections_and_config_round_trip():
    tied = tiny_lm("llama")
    table = tied.backbone.token_embedding.embeddings
    assert tied.lm_head is None and sum(w is table for w in tied.weights) == 1
    clone = config_roundtrip(tied)
    clone.build_for_inputs()
    assert clone.backbone.config == tied.backbone.config
    assert clone.count_params() == tied.count_params()
    untied = tiny_lm("llama", tie_embeddings=False)
    assert untied.count_params() == tied.count_params() + 61 * 32


def test_a_few_training_steps_lower_the_loss():
    model = tiny_lm("gpt2")
    ids = np.tile(np.arange(3, 11, dtype="int32"), (4, 2))  # a repeating pattern
    batch = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss, _ = model.compute_loss_and_metrics(batch, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(train_step()) for _ in range(15)]
    assert losses[-1] < 0.3 * losses[0]


def cached_logits(model, batch, prompt_length):
    """Logits of every position of `batch`, from a prefill of the first
    `prompt_length` tokens and then one generation_step per token."""
    ids, mask = batch["token_ids"], batch["padding_mask"]
    positions = np.asarray(positions_from_padding_mask(mask))
    cache = model.init_cache(ids.shape[0], ids.shape[1])
    logits, cache = model.generation_step(ids[:, :prompt_length], cache, 0,
                                          positions[:, :prompt_length], mask)
    steps = [logits]
    for i in range(prompt_length, ids.shape[1]):
        logits, cache = model.generation_step(ids[:, i:i + 1], cache, i,
                                              positions[:, i:i + 1], mask)
        steps.append(logits)
    return np.concatenate(steps, axis=1)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_generation_steps_equal_the_forward_pass(kind):
    model = tiny_lm(kind)
    batch = left_padded_batch()
    full = np.asarray(model(batch)["logits"])
    assert full.dtype == np.float32 and full.shape == (3, 10, 61)
    cached = cached_logits(model, batch, prompt_length=4)
    real = batch["padding_mask"].astype(bool)
    np.testing.assert_allclose(cached[real], full[real], atol=1e-4)
    # A left-padded row gives the same logits as the same tokens unpadded.
    alone = model({"token_ids": batch["token_ids"][:1, 3:],
                   "padding_mask": batch["padding_mask"][:1, 3:]})["logits"]
    np.testing.assert_allclose(full[0, 3:], alone[0], atol=1e-4)


@pytest.mark.parametrize("with_weights", [False, True])
def test_generation_step_traces_without_xla_ops(with_weights):
    model = tiny_lm("llama")
    cache = model.init_cache(2, 16)
    weights = {"weights": model.decoding_weights()} if with_weights else {}
    step = tf.function(lambda *args: model.generation_step(*args, **weights))
    graph = step.get_concrete_function(
        tf.TensorSpec([None, None], tf.int32),
        tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), cache),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, 16], tf.int32)).graph
    assert not [op.type for op in graph.get_operations() if op.type.startswith("Xla")]
    assert all(t.shape[0] == 2 for t in tf.nest.flatten(cache))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_later_tokens_do_not_change_earlier_logits(kind):
    model = tiny_lm(kind)
    batch = left_padded_batch()
    changed = {**batch, "token_ids": batch["token_ids"].copy()}
    changed["token_ids"][:, 7:] = 2
    before, after = (np.asarray(model(b)["logits"]) for b in (batch, changed))
    real = batch["padding_mask"][:, :7].astype(bool)  # padding queries attend to nothing
    np.testing.assert_allclose(before[:, :7][real], after[:, :7][real], atol=1e-5)
    assert not np.allclose(before[:, 7:], after[:, 7:])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_mixed_bfloat16_builds_trains_and_decodes(kind):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = tiny_lm(kind)
    assert model.backbone.token_embedding.embeddings.dtype == "float32"
    batch = left_padded_batch()
    with tf.GradientTape() as tape:
        loss, metrics = model.compute_loss_and_metrics(batch, training=True)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    cache = model.init_cache(3, 10)
    assert all(t.dtype == tf.bfloat16 for t in tf.nest.flatten(cache))
    cached = cached_logits(model, batch, prompt_length=4)
    assert cached.dtype == np.float32
    real = batch["padding_mask"].astype(bool)
    full = np.asarray(model(batch)["logits"])
    assert np.mean(np.argmax(cached, -1)[real] == np.argmax(full, -1)[real]) > 0.8


def test_checkpoint_of_the_model_alone_holds_every_variable(tmp_path):
    model = tiny_lm("llama", tie_embeddings=False)
    path = tf.train.Checkpoint(task=model).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("task/") and "seed_generator" not in name]
    assert len(saved) == len(model.trainable_variables)
    assert any(name.startswith("task/backbone/block_1/") for name in saved)
    assert any(name.startswith("task/lm_head/") for name in saved)
