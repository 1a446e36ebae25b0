"""The seq2seq family: named sizes and their parameter counts, the label-smoothed loss,
layer depths, serialization, source padding, cached and beam decoding against the full
forward pass, and a tiny model learning to reverse sequences."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.generation import beam_search, generate, left_pad
from kerasllm.models import Seq2SeqConfig, Seq2SeqLM, Seq2SeqTransformer, registry
from kerasllm.pretrained.model_dir import describe_model_dir, load_backbone
from kerasllm.tokenizers import train_sentencepiece
from tests.roundtrip import config_roundtrip

PAD, BOS, EOS = 0, 1, 2
TRANSFORMER_BASE_PARAMETERS = 63_082_496


def parameter_count(config):
    """The weights a Seq2SeqConfig implies, counted from the architecture's equations."""
    h, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    attention = 4 * h * h + 4 * h
    feed_forward = 2 * h * f + f + h
    norm = 2 * h
    encoder_block = attention + feed_forward + 2 * norm
    decoder_block = 2 * attention + feed_forward + 3 * norm
    embeddings = v * h + (config.max_sequence_length * h
                          if config.position_embedding == "learned" else 0)
    final_norms = 2 * norm if config.norm_position == "pre" else 0
    head = 0 if config.tie_embeddings else v * h
    return (embeddings + config.num_encoder_layers * encoder_block
            + config.num_decoder_layers * decoder_block + final_norms + head)


def test_registry_names_family_and_the_base_models_size():
    assert registry.model_names("seq2seq") == ["seq2seq_small", "seq2seq_tiny",
                                               "transformer_base"]
    family, config = registry.lookup("transformer_base")
    assert family.name == "seq2seq" and family.tokenizer_kind == "sentencepiece"
    assert family.backbone_class is Seq2SeqTransformer and isinstance(config, Seq2SeqConfig)
    assert (config.norm_position, config.position_embedding, config.label_smoothing,
            config.num_layers) == ("post", "sinusoidal", 0.1, 12)
    # Vaswani et al. report 65M for base over their 37000-token vocabulary.
    assert parameter_count(config) == TRANSFORMER_BASE_PARAMETERS


@pytest.mark.parametrize("config", [
    registry.get("seq2seq_tiny"),
    registry.get("seq2seq_tiny").replace(norm_position="post", position_embedding="learned",
                                         tie_embeddings=False, num_decoder_layers=1),
], ids=["tiny", "tiny_post_learned_untied"])
def test_the_equations_count_what_is_built(config):
    model = Seq2SeqLM(Seq2SeqTransformer(config)).build_for_inputs()
    assert model.count_params() == parameter_count(config)


@pytest.mark.slow  # builds 63M weights
def test_transformer_base_built():
    model = Seq2SeqLM.from_name("transformer_base").build_for_inputs()
    assert model.count_params() == TRANSFORMER_BASE_PARAMETERS


def test_config_refuses_unknown_choices():
    base = dict(vocab_size=10, hidden_size=8, num_encoder_layers=1, num_decoder_layers=1,
                num_heads=2, intermediate_size=8)
    with pytest.raises(ValueError, match="position_embedding must be one of"):
        Seq2SeqConfig(**base, position_embedding="rotary")
    with pytest.raises(ValueError, match="norm_position must be one of"):
        Seq2SeqConfig(**base, norm_position="middle")
    with pytest.raises(ValueError, match="not a multiple of num_heads"):
        Seq2SeqConfig(**{**base, "num_heads": 3})
    with pytest.raises(ValueError, match="label_smoothing"):
        Seq2SeqConfig(**base, label_smoothing=1.0)


TINY = dict(vocab_size=61, hidden_size=32, num_heads=4, intermediate_size=64,
            max_sequence_length=32, dropout=0.0)


def tiny_model(**overrides):
    tf.keras.utils.set_random_seed(1)
    return Seq2SeqLM.from_name("seq2seq_tiny", **{**TINY, **overrides}).build_for_inputs()


def make_batch(sources, targets, source_width=None):
    """Right-padded source ids and whole targets ([BOS, ..., EOS]) with their masks."""
    def pad(rows, width):
        ids = np.zeros((len(rows), width), "int32")
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        return ids, (np.arange(width)[None, :] < np.array([len(r) for r in rows])[:, None])

    source_ids, source_mask = pad(sources, source_width or max(map(len, sources)))
    target_ids, target_mask = pad(targets, max(map(len, targets)))
    return {"source_ids": source_ids, "source_padding_mask": source_mask.astype("int32"),
            "target_ids": target_ids, "target_padding_mask": target_mask.astype("int32")}


BATCH = make_batch([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]],
                   [[BOS, 20, 21, 22, EOS], [BOS, 23, EOS], [BOS, 24, 25, 26, 27, 28, EOS]])


def decoder_inputs(batch):
    """A whole-target batch as the model's call takes it (see Seq2SeqLM)."""
    return {**batch, "target_ids": batch["target_ids"][:, :-1],
            "target_padding_mask": batch["target_padding_mask"][:, :-1]}


def test_loss_is_label_smoothed_cross_entropy_over_real_targets():
    model = tiny_model(label_smoothing=0.1)  # the from-scratch sizes default to none
    loss, metrics = model.compute_loss_and_metrics(BATCH)
    assert set(metrics) == {"accuracy", "perplexity"}
    logits = np.asarray(model(decoder_inputs(BATCH))["logits"])
    assert logits.dtype == np.float32 and logits.shape == (3, 6, 61)
    labels = BATCH["target_ids"][:, 1:]
    real = BATCH["target_padding_mask"][:, 1:].astype(bool)
    assert real.sum() == 4 + 2 + 6
    smoothed = keras.losses.categorical_crossentropy(
        tf.one_hot(labels, 61), logits, from_logits=True, label_smoothing=0.1)
    nll = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    np.testing.assert_allclose(float(loss), np.mean(np.asarray(smoothed)[real]), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["perplexity"]),
                               np.exp(np.mean(np.asarray(nll)[real])), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["accuracy"]),
                               np.mean((logits.argmax(-1) == labels)[real]), rtol=1e-6)
    # The padding after a target changes nothing.
    changed = {**BATCH, "target_ids": BATCH["target_ids"] + 9 * (
        1 - BATCH["target_padding_mask"])}
    np.testing.assert_allclose(float(model.compute_loss_and_metrics(changed)[0]),
                               float(loss), rtol=1e-6)


def test_layer_depths_put_the_decoder_above_the_encoder():
    backbone = tiny_model(norm_position="pre", tie_embeddings=False).backbone
    assert backbone.num_layers == 4
    assert backbone.layer_depth(backbone.token_embedding.embeddings) == 0
    assert backbone.layer_depth(backbone.encoder_block_1.attention.query_dense.kernel) == 2
    assert backbone.layer_depth(backbone.encoder_final_norm.gamma) == 2
    assert backbone.layer_depth(backbone.decoder_block_0.cross_attention.key_dense.kernel) == 3
    assert backbone.layer_depth(backbone.decoder_final_norm.gamma) == 5
    assert None not in [backbone.layer_depth(w) for w in backbone.weights]


def test_config_round_trip_and_keras_save_and_load(tmp_path):
    model = tiny_model(norm_position="pre", position_embedding="learned")
    clone = config_roundtrip(model)
    clone.build_for_inputs()
    assert clone.backbone.config == model.backbone.config
    assert clone.count_params() == model.count_params()
    inputs = decoder_inputs(BATCH)
    path = str(tmp_path / "seq2seq.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Seq2SeqLM)
    np.testing.assert_array_equal(loaded(inputs)["logits"], model(inputs)["logits"])


def test_checkpoint_of_the_model_alone_holds_every_variable(tmp_path):
    model = tiny_model(norm_position="pre", tie_embeddings=False)
    path = tf.train.Checkpoint(task=model).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("task/") and "seed_generator" not in name]
    assert len(saved) == len(model.trainable_variables)
    assert any(name.startswith("task/backbone/decoder_block_1/cross_attention/")
               for name in saved)


def test_a_model_dir_reloads_the_backbone(tmp_path):
    words = "the quick brown fox jumps over a lazy dog then runs into the deep forest".split()
    rng = np.random.default_rng(0)
    tokenizer = train_sentencepiece(
        [" ".join(rng.choice(words, 12)) for _ in range(300)], vocab_size=300)
    config = registry.get("seq2seq_tiny").replace(**{**TINY, "vocab_size": 300})
    task = Seq2SeqLM(Seq2SeqTransformer(config)).build_for_inputs()
    tf.train.CheckpointManager(tf.train.Checkpoint(task=task), str(tmp_path), 1,
                               checkpoint_name="ckpt").save(1)
    describe_model_dir(str(tmp_path), "seq2seq", config, tokenizer)
    backbone, loaded_tokenizer = load_backbone(str(tmp_path))
    assert isinstance(backbone, Seq2SeqTransformer) and backbone.config == config
    assert loaded_tokenizer.vocab_size == 300
    for a, b in zip(backbone.get_weights(), task.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_source_padding_and_its_side_change_nothing(norm_position):
    model = tiny_model(norm_position=norm_position)
    inputs = decoder_inputs(BATCH)
    logits = np.asarray(model(inputs)["logits"])
    encoded = np.asarray(model.backbone.encode(BATCH["source_ids"],
                                               BATCH["source_padding_mask"]))
    wider = decoder_inputs(make_batch([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]],
                                      [[0]], source_width=9))
    wider["source_ids"] += 17 * (1 - wider["source_padding_mask"])  # padding ids: any
    wider = {**wider, "target_ids": inputs["target_ids"],
             "target_padding_mask": inputs["target_padding_mask"]}
    real = inputs["target_padding_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(model(wider)["logits"])[real], logits[real],
                               atol=1e-5)
    wider_encoded = np.asarray(model.backbone.encode(wider["source_ids"],
                                                     wider["source_padding_mask"]))
    source_real = BATCH["source_padding_mask"].astype(bool)
    np.testing.assert_allclose(wider_encoded[:, :5][source_real], encoded[source_real],
                               atol=1e-5)
    # A left-padded source reads the same: positions count real tokens only.
    left = dict(inputs)
    left["source_ids"] = np.array([[5, 6, 7, 8, 9], [0, 0, 0, 10, 11], [0, 0, 12, 13, 14]])
    left["source_padding_mask"] = (left["source_ids"] > 0).astype("int32")
    np.testing.assert_allclose(np.asarray(model(left)["logits"])[real], logits[real],
                               atol=1e-5)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_cached_steps_over_precomputed_key_values_equal_the_full_pass(norm_position):
    model = tiny_model(norm_position=norm_position)
    inputs = decoder_inputs(BATCH)
    full = np.asarray(model(inputs)["logits"])
    ids, mask = inputs["target_ids"], inputs["target_padding_mask"]
    context = model.encode_context(BATCH["source_ids"], BATCH["source_padding_mask"])
    assert sorted(context) == ["encoder_key_values", "source_padding_mask"]
    assert context["encoder_key_values"]["decoder_block_1"].shape == (3, 2, 5, 4, 8)
    cache = model.init_cache(3, ids.shape[1])
    logits, cache = model.generation_step(ids[:, :2], cache, 0, np.tile([[0, 1]], (3, 1)),
                                          mask, context=context)
    steps = [logits]
    for i in range(2, ids.shape[1]):
        logits, cache = model.generation_step(ids[:, i:i + 1], cache, i,
                                              np.full((3, 1), i), mask, context=context)
        steps.append(logits)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.concatenate(steps, 1)[real], full[real], atol=1e-4)


PROMPTS = [[BOS], [BOS, 30], [BOS, 31, 32]]  # forced target prefixes of three lengths
NEW_TOKENS = 5


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_cached_greedy_equals_recomputation_and_one_beam(norm_position):
    model = tiny_model(norm_position=norm_position)
    source_ids, source_mask = BATCH["source_ids"], BATCH["source_padding_mask"]
    context = model.encode_context(source_ids, source_mask)
    prompts = left_pad(tf.ragged.constant(PROMPTS), length_multiple=4)

    def step(*args):
        return model.generation_step(*args, context=context)

    generated = generate(step, model.init_cache, prompts, NEW_TOKENS)
    for row, prompt in enumerate(PROMPTS):
        ids = list(prompt)
        for _ in range(NEW_TOKENS):
            logits = model({"source_ids": source_ids[row:row + 1],
                            "source_padding_mask": source_mask[row:row + 1],
                            "target_ids": tf.constant([ids]),
                            "target_padding_mask": tf.ones([1, len(ids)], tf.int32)})["logits"]
            ids.append(int(np.argmax(logits[0, -1])))
        np.testing.assert_array_equal(generated.token_ids[row], ids[len(prompt):])
    beams = beam_search(model.generation_step, model.init_cache, prompts, NEW_TOKENS, 1,
                        context=context)
    np.testing.assert_array_equal(beams.token_ids[:, 0], generated.token_ids)
    # More beams: the context is repeated per beam.
    beams = beam_search(model.generation_step, model.init_cache, prompts, NEW_TOKENS, 3,
                        context=context)
    assert beams.token_ids.shape == (3, 3, NEW_TOKENS)
    assert np.isfinite(beams.scores[:, 0]).all()


def test_decoding_has_no_xla_ops_and_compiles_with_xla():
    model = tiny_model(num_encoder_layers=1, num_decoder_layers=1)
    source_ids, source_mask = BATCH["source_ids"], BATCH["source_padding_mask"]
    cache = model.init_cache(3, 8)

    @tf.function
    def encode_and_step(source_ids, source_mask, token_ids, cache, index, positions, mask):
        context = model.encode_context(source_ids, source_mask)
        return model.generation_step(token_ids, cache, index, positions, mask,
                                     context=context)

    def spec(tensor):
        return tf.TensorSpec([None, *tensor.shape[1:]], tensor.dtype)

    graph = encode_and_step.get_concrete_function(
        tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.int32), tf.nest.map_structure(spec, cache),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, 8], tf.int32)).graph
    assert not [op.type for op in graph.get_operations() if op.type.startswith("Xla")]

    prompts = left_pad(tf.ragged.constant(PROMPTS), length_multiple=4)

    def greedy(source_ids, source_mask, prompts):
        context = model.encode_context(source_ids, source_mask)
        return generate(lambda *args: model.generation_step(*args, context=context),
                        model.init_cache, prompts, NEW_TOKENS).token_ids

    compiled = tf.function(greedy, jit_compile=True)(source_ids, source_mask, prompts)
    np.testing.assert_array_equal(compiled, greedy(source_ids, source_mask, prompts))


def test_a_tiny_model_learns_to_reverse_a_few_sequences():
    rng = np.random.default_rng(0)
    sources = [list(rng.integers(3, 16, length)) for length in rng.integers(3, 7, 8)]
    batch = make_batch(sources, [[BOS, *s[::-1], EOS] for s in sources])
    tf.keras.utils.set_random_seed(0)
    model = Seq2SeqLM.from_name(
        "seq2seq_tiny", vocab_size=16, hidden_size=32, num_heads=4, intermediate_size=64,
        max_sequence_length=16, dropout=0.0, label_smoothing=0.0, num_encoder_layers=1,
        num_decoder_layers=1).build_for_inputs()
    optimizer = keras.optimizers.Adam(3e-3)
    # Its slots made eagerly: inside train_step they would cost a second trace.
    optimizer.build(model.trainable_variables)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss, metrics = model.compute_loss_and_metrics(batch, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, metrics["accuracy"]

    for _ in range(200):
        loss, accuracy = train_step()
    assert float(accuracy) == pytest.approx(1.0) and float(loss) < 0.1

    context = model.encode_context(batch["source_ids"], batch["source_padding_mask"])
    generated = generate(lambda *args: model.generation_step(*args, context=context),
                         model.init_cache, left_pad(tf.ragged.constant([[BOS]] * 8)), 7,
                         stop_token_ids=[EOS])
    for row, source in enumerate(sources):
        length = int(generated.lengths[row])
        assert list(generated.token_ids[row, :length]) == [*source[::-1], EOS]


def test_mixed_bfloat16_trains_and_decodes():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = tiny_model(norm_position="pre")
    assert model.backbone.token_embedding.embeddings.dtype == "float32"
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss_and_metrics(BATCH, training=True)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    context = model.encode_context(BATCH["source_ids"], BATCH["source_padding_mask"])
    assert all(t.dtype == tf.bfloat16 for t in tf.nest.flatten(context["encoder_key_values"]))
    generated = generate(lambda *args: model.generation_step(*args, context=context),
                         model.init_cache, left_pad(tf.ragged.constant(PROMPTS)), 3)
    assert generated.token_ids.shape == (3, 3)
