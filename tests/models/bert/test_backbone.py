import numpy as np
import pytest

from kerasllm.models import BertEncoder, BertPretrainer, UnknownModelError, registry
from tests.roundtrip import config_roundtrip


@pytest.mark.slow  # builds 110M and 335M weights: 17 s on 2 cores
@pytest.mark.parametrize("name, expected_millions", [("bert_base", 110), ("bert_large", 340)])
def test_published_parameter_counts(name, expected_millions):
    encoder = BertEncoder(registry.get(name)).build_for_inputs()
    assert encoder.config.vocab_size == 30522
    assert abs(encoder.count_params() / 1e6 - expected_millions) / expected_millions < 0.02


def test_minilm_l6_matches_the_imported_checkpoint():
    # all-MiniLM-L6-v2 has 22,565,376 weights and no pooler (its sentence embedding
    # is a mean); the encoder adds a 384x384 tanh pooler.
    encoder = BertEncoder(registry.get("minilm_l6")).build_for_inputs()
    assert encoder.count_params() == 22_565_376 + 384 * 384 + 384


def test_small_bert_sizes_follow_their_names():
    for name, (layers, hidden, heads) in {
        "bert_tiny": (2, 128, 2), "bert_mini": (4, 256, 4), "bert_small": (4, 512, 8),
        "bert_medium": (8, 512, 8),
    }.items():
        config = registry.get(name)
        assert (config.num_layers, config.hidden_size, config.num_heads) == (layers, hidden, heads)
        assert config.intermediate_size == 4 * hidden


def test_unknown_model_names_the_choices():
    with pytest.raises(UnknownModelError, match="bert_tny.*bert_tiny"):
        registry.get("bert_tny")


def tiny_batch(batch=2, seq=8, predictions=3):
    rng = np.random.default_rng(0)
    return {
        "token_ids": rng.integers(5, 40, (batch, seq)).astype("int32"),
        "segment_ids": np.array([[0] * 4 + [1] * 4] * batch, "int32"),
        "padding_mask": np.array([[1] * 7 + [0]] * batch, "int32"),
        "masked_positions": np.array([[1, 2, 0]] * batch, "int32"),
        "masked_ids": rng.integers(5, 40, (batch, predictions)).astype("int32"),
        "masked_weights": np.array([[1, 1, 0]] * batch, "float32"),
        "next_sentence_labels": np.array([1, 0][:batch], "int32"),
    }


def test_encoder_outputs_and_padding_invariance():
    encoder = BertEncoder(registry.get("bert_tiny").replace(vocab_size=40, dropout=0.0))
    batch = tiny_batch()
    out = encoder(batch)
    assert out["sequence_output"].shape == (2, 8, 128)
    assert out["pooled_output"].shape == (2, 128)
    changed = dict(batch, token_ids=batch["token_ids"].copy())
    changed["token_ids"][:, 7] = 39  # a padded position
    np.testing.assert_allclose(out["sequence_output"][:, :7],
                               encoder(changed)["sequence_output"][:, :7], atol=1e-5)


def test_pretrainer_loss_metrics_and_config_roundtrip():
    model = BertPretrainer.from_name("bert_tiny", vocab_size=40, max_sequence_length=16)
    batch = tiny_batch()
    loss, metrics = model.compute_loss_and_metrics(batch)
    # Untrained: MLM loss near log(vocab), NSP near log(2).
    assert abs(float(metrics["mlm_loss"]) - np.log(40)) < 1.0
    assert abs(float(metrics["nsp_loss"]) - np.log(2)) < 0.5
    np.testing.assert_allclose(float(loss), float(metrics["mlm_loss"] + metrics["nsp_loss"]),
                               rtol=1e-6)
    assert set(metrics) == {"mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy"}
    clone = config_roundtrip(model)
    clone.build_for_inputs()
    assert clone.backbone.config == model.backbone.config
    assert clone.count_params() == model.count_params()


def test_mlm_output_projection_is_tied_to_token_embedding():
    model = BertPretrainer.from_name("bert_tiny", vocab_size=40).build_for_inputs()
    table = model.backbone.token_embedding.embeddings
    assert model.mlm_head.token_embedding.embeddings is table
    assert sum(w is table for w in model.weights) == 1


def test_checkpoint_of_the_model_alone_holds_every_variable(tmp_path):
    import tensorflow as tf
    model = BertPretrainer.from_name("bert_tiny", vocab_size=40).build_for_inputs()
    path = tf.train.Checkpoint(task=model).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("task/") and "seed_generator" not in name]
    assert len(saved) == len(model.trainable_variables)
    assert any(name.startswith("task/backbone/block_1/") for name in saved)
