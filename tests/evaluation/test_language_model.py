"""The held-out loss: the mean over every predicted token, however the batches split
and pad them."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.evaluation.language_model import HeldOutLoss, documents_loss
from kerasllm.models import GptCausalLM

VOCAB = 50


def test_the_loss_is_the_mean_over_every_predicted_token():
    tf.keras.utils.set_random_seed(0)
    model = GptCausalLM.from_name("gpt_tiny", vocab_size=VOCAB, max_sequence_length=16,
                                  dropout=0.0).build_for_inputs()
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, (5, 8)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 5:] = 0  # right padding: rows of different lengths
    mask[4, 2:] = 0
    batches = [{"token_ids": ids[i:i + 2], "padding_mask": mask[i:i + 2]}
               for i in (0, 2, 4)]  # the last batch holds one row
    log_probabilities = tf.nn.log_softmax(
        model({"token_ids": ids, "padding_mask": mask})["logits"]).numpy()
    picked = np.take_along_axis(log_probabilities[:, :-1], ids[:, 1:, None], -1)[..., 0]
    predicted = (mask[:, 1:] * mask[:, :-1]).astype(bool)
    expected = -picked[predicted].mean()
    scores = HeldOutLoss(batches, "padding_mask")(model)
    assert scores["loss"] == pytest.approx(expected, rel=1e-5)
    assert scores["perplexity"] == pytest.approx(np.exp(expected), rel=1e-5)
    assert "bits_per_character" not in scores

    # 3.5 characters per token: the same nats spread over 3.5 times as many characters.
    per_character = HeldOutLoss(batches, "padding_mask", characters_per_token=3.5)(model)
    assert per_character["bits_per_character"] == pytest.approx(
        expected / np.log(2) / 3.5, rel=1e-5)


def test_documents_loss_counts_the_characters_the_stream_holds():
    tf.keras.utils.set_random_seed(0)
    model = GptCausalLM.from_name("gpt_tiny", vocab_size=VOCAB, max_sequence_length=16,
                                  dropout=0.0).build_for_inputs()
    documents = [["ab", "cd"], ["efg"]]  # "ab\ncd" and "efg": 8 characters
    stream = np.arange(1, 21, dtype="int32") % VOCAB  # 20 tokens: 0.4 characters each
    scores = documents_loss(stream, documents, seq_length=8, batch_size=2)(model)
    assert scores["bits_per_character"] == pytest.approx(scores["loss"] / np.log(2) / 0.4)
