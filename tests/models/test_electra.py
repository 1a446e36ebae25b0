"""ELECTRA pretraining: the replaced-token labels, the shared embeddings, the
generator's size, (de)serialisation, training through the loop (resumed exactly),
and a run's model_dir fine-tuned from as the discriminator."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.errors import ConfigError
from kerasllm.models import BertClassifier, ElectraPretrainer, registry
from kerasllm.models.bert.electra import generator_config, put_tokens, replaced_token_labels
from kerasllm.pretrained import load_pretrained
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.tokenizers import WordPieceTokenizer
from kerasllm.training.checkpoints import rng_states
from tests.roundtrip import config_roundtrip
from tests.training.helpers import SEQ, VOCAB, fixed_examples, run

MASK = 4
TOKENIZER = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                               + [f"w{i}" for i in range(VOCAB - 5)])


def tiny_electra(**settings):
    return ElectraPretrainer.from_name("bert_tiny", vocab_size=VOCAB, max_sequence_length=SEQ,
                                       dropout=0.0, attention_dropout=0.0, **settings)


def mlm_batch():
    """The loop's fixed batch as the `mlm` pipeline gives it: one segment, no NSP
    labels, [MASK] at the masked positions; the last two tokens and the last
    prediction of each row are padding."""
    batch = fixed_examples()
    del batch["next_sentence_labels"]
    batch["segment_ids"][:] = 0
    batch["padding_mask"][:, -2:] = 0
    batch["masked_weights"][:, -1] = 0
    rows = np.arange(len(batch["token_ids"]))[:, None]
    batch["token_ids"][rows, batch["masked_positions"]] = MASK
    return batch


def test_labels_are_exactly_the_replaced_tokens():
    original = np.array([[2, 10, 11, 12, 13, 3, 0]], "int32")
    padding_mask = np.array([[1, 1, 1, 1, 1, 1, 0]], "int32")
    positions = np.array([[1, 2, 4, 0]], "int32")
    weights = np.array([[1, 1, 1, 0]], "float32")
    # Position 2 draws its own token back; the padding prediction (weight 0, at
    # position 0 as padding predictions are) would write 30 over [CLS].
    samples = np.array([[20, 11, 21, 30]], "int32")
    seen = put_tokens(original, positions, samples, weights)
    np.testing.assert_array_equal(seen, [[2, 20, 11, 12, 21, 3, 0]])
    labels = replaced_token_labels(original, seen, padding_mask)
    np.testing.assert_array_equal(labels, [[0, 1, 0, 0, 1, 0, 0]])
    # A token that differs under padding is no replacement the loss sees.
    np.testing.assert_array_equal(
        replaced_token_labels(original, original + 1, padding_mask), [[1, 1, 1, 1, 1, 1, 0]])


@pytest.mark.parametrize("drawn, replaced", [("original", 0.0), ("another", 1.0)])
def test_a_generator_that_draws_the_original_replaces_nothing(drawn, replaced):
    batch = mlm_batch()
    batch["masked_ids"][:] = 7  # every masked token was 7
    model = tiny_electra().build_for_inputs()
    # A generator certain of one token: the original everywhere, or never it.
    bias = np.zeros(VOCAB, "float32")
    bias[7 if drawn == "original" else 9] = 1e4
    model.generator_head.output_bias.assign(bias)
    _, metrics = model.compute_loss_and_metrics(batch)
    assert float(metrics["replaced_fraction"]) == replaced
    # The base rate's loss: the entropy of the replaced share of the real tokens.
    share = replaced * batch["masked_weights"].sum() / batch["padding_mask"].sum()
    expected = 0.0 if share == 0 else -(share * np.log(share) + (1 - share) * np.log(1 - share))
    np.testing.assert_allclose(float(metrics["discriminator_base_rate_loss"]), expected,
                               atol=1e-5)
    assert float(metrics["generator_accuracy"]) == (1.0 if drawn == "original" else 0.0)
    # The discriminator saw the originals, or 9 at the masked positions.
    original = put_tokens(batch["token_ids"], batch["masked_positions"], batch["masked_ids"],
                          batch["masked_weights"])
    seen = put_tokens(original, batch["masked_positions"],
                      model.sample(model.generator_logits(batch)), batch["masked_weights"])
    labels = replaced_token_labels(original, seen, batch["padding_mask"]).numpy()
    assert labels.sum() == replaced * batch["masked_weights"].sum()


def test_generator_shares_the_discriminators_embeddings():
    model = tiny_electra().build_for_inputs()
    shared = model.backbone.embedding
    assert model.generator.embedding is shared
    assert model.generator_head.token_embedding is shared.token_embedding
    for weight in shared.weights:  # token, segment, position tables and LayerNorm
        assert sum(w is weight for w in model.weights) == 1
        assert sum(w is weight for w in model.trainable_variables) == 1
    # Projected to the generator's width; the discriminator reads them as they are.
    assert model.generator.embedding_projection.kernel.shape == (128, 32)
    assert model.backbone.embedding_projection is None
    # The generator's MLM loss alone trains the shared tables, every token's row.
    tables = [shared.token_embedding.embeddings, shared.position_embedding.embeddings]
    with tf.GradientTape() as tape:
        _, metrics = model.compute_loss_and_metrics(mlm_batch(), training=True)
    token_rows, positions = (tf.convert_to_tensor(g) for g in
                             tape.gradient(metrics["generator_loss"], tables))
    assert bool(tf.reduce_all(tf.reduce_max(tf.abs(token_rows), -1) > 0))
    assert float(tf.reduce_max(tf.abs(positions))) > 0


def test_generator_is_a_fraction_of_the_discriminators_width():
    base = registry.get("bert_base")
    quarter = generator_config(base, 0.25)
    assert (quarter.hidden_size, quarter.num_heads, quarter.intermediate_size) == (192, 3, 768)
    assert quarter.num_layers == base.num_layers and quarter.vocab_size == base.vocab_size
    tiny = tiny_electra(generator_size=0.25).build_for_inputs()
    assert (tiny.generator.config.hidden_size, tiny.generator.config.num_heads) == (32, 1)
    assert tiny.generator.count_params() < tiny.backbone.count_params() / 3
    for size in (0.0, 1.5):
        with pytest.raises(ConfigError, match="in \\(0, 1\\]"):
            generator_config(base, size)
    with pytest.raises(ConfigError, match="230 over 4 heads"):
        generator_config(base, 0.3)
    with pytest.raises(ConfigError, match="discriminator_weight"):
        tiny_electra(discriminator_weight=0)


def test_config_roundtrip_and_keras_file(tmp_path):
    model = tiny_electra(generator_size=0.5, discriminator_weight=20.0).build_for_inputs()
    clone = config_roundtrip(model).build_for_inputs()
    assert (clone.generator_size, clone.discriminator_weight) == (0.5, 20.0)
    assert clone.generator.config == model.generator.config
    assert clone.generator.embedding is clone.backbone.embedding
    assert clone.count_params() == model.count_params()
    path = str(tmp_path / "electra.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    batch = mlm_batch()
    for name, value in model(batch).items():
        np.testing.assert_allclose(loaded(batch)[name], value, atol=1e-5, err_msg=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 30-step run of the loop on the fixed batch, two micro-batches a step
    (the discriminator's unused pooler has no gradient, which they must carry)."""
    model_dir = tmp_path_factory.mktemp("electra")
    examples = mlm_batch()
    result, logged = run(model_dir, build_task=tiny_electra, examples=examples,
                         grad_accum_steps=2)
    return model_dir, result, logged


def test_the_discriminator_learns_a_replacement_it_can_see(tmp_path):
    """Through the whole training path (sampling, labels, loss, loop), the
    discriminator learns more than the base rate when the replacements are
    learnable: a generator that always draws one token the batch never holds."""
    examples = mlm_batch()
    held = set(examples["token_ids"].ravel()) | set(examples["masked_ids"].ravel())
    drawn = min(set(range(MASK + 1, VOCAB)) - held)

    def build():
        model = tiny_electra().build_for_inputs()
        bias = np.zeros(VOCAB, "float32")
        bias[drawn] = 1e4
        model.generator_head.output_bias.assign(bias)
        return model

    _, logged = run(tmp_path, build_task=build, examples=examples, train_steps=30)
    last = logged[-1][1]
    assert last["replaced_fraction"] == 1.0
    assert last["discriminator_loss"] < 0.2 * last["discriminator_base_rate_loss"], last


def test_training_lowers_both_losses(trained):
    _, result, logged = trained
    assert [step for step, _ in logged] == [10, 20, 30]
    first, last = logged[0][1], logged[-1][1]
    assert set(first) >= {"generator_loss", "generator_accuracy", "discriminator_loss",
                          "discriminator_accuracy", "discriminator_base_rate_loss",
                          "replaced_fraction"}
    assert last["loss"] < 0.6 * first["loss"], (first, last)
    assert last["generator_loss"] < first["generator_loss"]
    assert last["discriminator_loss"] < first["discriminator_loss"]
    np.testing.assert_allclose(
        last["loss"], last["generator_loss"] + 50 * last["discriminator_loss"], rtol=0.05)


def test_serving_signatures_embed_with_the_discriminator():
    model = tiny_electra().build_for_inputs()
    model.tokenizer = TOKENIZER
    signatures = model.serving_signatures()
    assert "fill_mask" not in signatures
    outputs = signatures["serving_default"](text=tf.constant(["w1 w2 w3", "w4"]))
    inputs = {name: outputs[name] for name in ("token_ids", "padding_mask")}
    inputs["segment_ids"] = tf.zeros_like(inputs["token_ids"])
    np.testing.assert_allclose(outputs["sequence_output"],
                               model.backbone(inputs)["sequence_output"], atol=1e-5)


def test_a_run_fine_tunes_from_its_discriminator(trained):
    model_dir, result, _ = trained
    describe_model_dir(str(model_dir), "bert", result.task.backbone.config, TOKENIZER)
    encoder, tokenizer = load_pretrained(str(model_dir))  # what finetune_bert calls
    classifier = BertClassifier(encoder, 2).build_for_inputs()
    discriminator = result.task.backbone.get_weights()
    assert tokenizer.vocab_size == VOCAB
    assert len(classifier.backbone.get_weights()) == len(discriminator)
    for loaded, trained_weight in zip(classifier.backbone.get_weights(), discriminator):
        np.testing.assert_array_equal(loaded, trained_weight)
    generator_table = result.task.generator.token_embedding.embeddings.numpy()
    np.testing.assert_array_equal(classifier.backbone.token_embedding.embeddings.numpy(),
                                  generator_table)


def test_draws_follow_the_rng_state_checkpoints_keep(tmp_path):
    model = tiny_electra().build_for_inputs()
    logits = model.generator_logits(mlm_batch())
    # What kerasllm.training.checkpoints saves beside the weights.
    checkpoint = tf.train.Checkpoint(rng=rng_states(model))
    path = checkpoint.save(str(tmp_path / "ckpt"))
    first = model.sample(logits)
    assert not np.array_equal(first, model.sample(logits))  # each draw moves the state on
    checkpoint.restore(path)
    np.testing.assert_array_equal(model.sample(logits), first)


@pytest.mark.slow  # three runs of the loop: 20 s on 2 cores
def test_a_resumed_run_draws_what_an_uninterrupted_one_does(tmp_path):
    settings = dict(examples=mlm_batch(), build_task=tiny_electra, log_every=2,
                    checkpoint_every=2, steps_per_loop=2)
    straight, _ = run(tmp_path / "straight", train_steps=4, **settings)
    run(tmp_path / "resumed", train_steps=2, **settings)
    resumed, _ = run(tmp_path / "resumed", train_steps=4, **settings)
    assert resumed.start_step == 2
    for a, b in zip(straight.task.weights, resumed.task.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
