import keras
import numpy as np
import pytest
from keras import ops

from kerasllm.layers import (BertEmbedding, MaskedLMHead, MultiHeadAttention,
                             NextSentencePredictionHead, ReplacedTokenHead,
                             TransformerEncoderBlock)
from tests.roundtrip import config_roundtrip


def test_bert_embedding_shapes_and_segments():
    layer = BertEmbedding(vocab_size=50, hidden_size=16, max_sequence_length=12,
                          dropout=0.0)
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    out = layer(ids, np.zeros_like(ids))
    assert out.shape == (2, 4, 16)
    other_segment = layer(ids, np.ones_like(ids))
    assert not np.allclose(out, other_segment)
    # LayerNorm output: zero mean, unit variance over the hidden axis.
    np.testing.assert_allclose(ops.mean(out, -1), 0.0, atol=1e-5)
    config_roundtrip(layer)


def test_attention_padding_mask_ignores_masked_keys():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    x = np.random.default_rng(0).normal(size=(1, 5, 8)).astype("float32")
    mask = np.array([[[1, 1, 1, 0, 0]] * 5])
    out = layer(x, attention_mask=mask)
    changed = x.copy()
    changed[:, 3:] = 100.0
    # Keys 3 and 4 are masked, but queries 3 and 4 are real inputs too: compare queries 0..2.
    np.testing.assert_allclose(out[:, :3], layer(changed, attention_mask=mask)[:, :3], atol=1e-5)
    config_roundtrip(layer)


def test_attention_causal_mask_hides_future():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    x = np.random.default_rng(1).normal(size=(2, 6, 8)).astype("float32")
    out = layer(x, use_causal_mask=True)
    changed = x.copy()
    changed[:, 4:] = -7.0
    np.testing.assert_allclose(out[:, :4], layer(changed, use_causal_mask=True)[:, :4],
                               atol=1e-5)
    assert not np.allclose(out[:, 4:], layer(changed, use_causal_mask=True)[:, 4:])


def test_attention_kv_cache_matches_full_causal_pass():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    x = np.random.default_rng(2).normal(size=(2, 6, 8)).astype("float32")
    full = layer(x, use_causal_mask=True)
    cache = np.zeros((2, 2, 6, 2, 4), "float32")
    prefix, cache = layer(x[:, :3], cache=cache, cache_update_index=0)
    np.testing.assert_allclose(prefix, full[:, :3], atol=1e-5)
    for position in range(3, 6):
        step, cache = layer(x[:, position:position + 1], cache=cache,
                            cache_update_index=position)
        np.testing.assert_allclose(step[:, 0], full[:, position], atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_shapes_and_padding(norm_first):
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=32, dropout=0.0,
                                    attention_dropout=0.0, norm_first=norm_first)
    x = np.random.default_rng(3).normal(size=(2, 5, 16)).astype("float32")
    padding = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = block(x, padding_mask=padding)
    assert out.shape == (2, 5, 16)
    changed = x.copy()
    changed[0, 3:] = 9.0
    np.testing.assert_allclose(out[0, :3], block(changed, padding_mask=padding)[0, :3],
                               atol=1e-5)
    clone = config_roundtrip(block)
    assert clone.norm_first == norm_first


def test_encoder_block_post_ln_output_is_normalised():
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=32, dropout=0.0)
    out = block(np.random.default_rng(4).normal(size=(1, 3, 16)).astype("float32"))
    np.testing.assert_allclose(ops.std(out, -1), 1.0, atol=1e-2)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_two_streams_share_its_weights(norm_first):
    # Weights larger than BERT's 0.02: attention that moves the outputs visibly.
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=32, dropout=0.0,
                                    attention_dropout=0.0, norm_first=norm_first,
                                    initializer_range=0.3)
    rng = np.random.default_rng(6)
    content = rng.normal(size=(2, 5, 16)).astype("float32")
    query = rng.normal(size=(2, 5, 16)).astype("float32")
    padding = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    mask = rng.integers(0, 2, (2, 5, 5)) | np.eye(5, dtype=int)
    query_mask = rng.integers(0, 2, (2, 5, 5))
    content_out, query_out = block(content, padding_mask=padding, attention_mask=mask,
                                   query_stream=query, query_attention_mask=query_mask)
    # The content stream is the block's one-stream output, unchanged by the query stream.
    np.testing.assert_allclose(content_out, block(content, padding_mask=padding,
                                                  attention_mask=mask), atol=1e-5)
    # A query row reads its own query input and the content its mask lets it see.
    query_mask[0, 2] = [1, 0, 0, 1, 1]  # column 4 is padding all the same
    _, query_out = block(content, padding_mask=padding, attention_mask=mask,
                         query_stream=query, query_attention_mask=query_mask)

    def query_row_after(content_change, query_change):
        changed_content, changed_query = content.copy(), query.copy()
        changed_content[0, content_change] += rng.normal(size=(len(content_change), 16))
        changed_query[0, query_change] += rng.normal(size=(len(query_change), 16))
        return block(changed_content, padding_mask=padding, attention_mask=mask,
                     query_stream=changed_query, query_attention_mask=query_mask)[1][0, 2]

    np.testing.assert_allclose(query_row_after([1, 2, 4], [0, 1, 3, 4]), query_out[0, 2],
                               atol=1e-5)
    assert not np.allclose(query_row_after([3], []), query_out[0, 2], atol=1e-2)
    assert not np.allclose(query_row_after([], [2]), query_out[0, 2], atol=1e-2)
    # Given the content stream itself and its mask, it is the content stream.
    _, same = block(content, padding_mask=padding, attention_mask=mask,
                    query_stream=content, query_attention_mask=mask)
    np.testing.assert_allclose(same, content_out, atol=1e-5)
    # No weights of its own: the block has exactly its one-stream weights.
    assert len(block.weights) == 16


def test_bert_embedding_token_vectors_replace_the_tokens():
    layer = BertEmbedding(vocab_size=50, hidden_size=16, max_sequence_length=12,
                          dropout=0.0)
    vector = np.random.default_rng(7).normal(size=(1, 1, 16)).astype("float32")
    out = layer(np.array([[1, 2, 3]]), token_vectors=vector)
    np.testing.assert_allclose(out, layer(np.array([[4, 5, 6]]), token_vectors=vector))
    # Still position-dependent: each row sees its position embedding.
    assert not np.allclose(out[0, 0], out[0, 1])
    table = layer.token_embedding.embeddings
    np.testing.assert_allclose(layer(np.array([[1, 2]]), token_vectors=ops.take(
        table, np.array([[1, 2]]), axis=0)), layer(np.array([[1, 2]])), atol=1e-6)


def test_masked_lm_head_gathers_positions_and_ties_embedding():
    embedding = keras.layers.Embedding(30, 8)
    embedding.build((None,))
    head = MaskedLMHead(vocab_size=30, token_embedding=embedding)
    seq = np.random.default_rng(5).normal(size=(2, 6, 8)).astype("float32")
    positions = np.array([[0, 5], [2, 2]])
    logits = head(seq, positions)
    assert logits.shape == (2, 2, 30)
    np.testing.assert_allclose(logits[1, 0], logits[1, 1], atol=1e-6)
    assert "output_kernel" not in [w.path.split("/")[-1] for w in head.weights]
    untied = config_roundtrip(head)
    untied(seq, positions)
    assert any(w.path.endswith("output_kernel") for w in untied.weights)


def test_masked_lm_head_tied_to_a_table_of_another_width():
    embedding = keras.layers.Embedding(30, 12)
    embedding.build((None,))
    head = MaskedLMHead(vocab_size=30, token_embedding=embedding)
    seq = np.random.default_rng(5).normal(size=(2, 6, 8)).astype("float32")
    assert head(seq, np.array([[0, 5], [2, 2]])).shape == (2, 2, 30)
    assert head.transform.kernel.shape == (8, 12)


def test_replaced_token_head_gives_one_logit_per_token():
    head = ReplacedTokenHead()
    seq = np.random.default_rng(6).normal(size=(2, 5, 8)).astype("float32")
    logits = head(seq)
    assert logits.shape == (2, 5) and logits.dtype == "float32"
    np.testing.assert_allclose(head(seq[:, ::-1])[:, ::-1], logits, atol=1e-6)  # per token
    config_roundtrip(head)


def test_next_sentence_head():
    head = NextSentencePredictionHead()
    assert head(np.zeros((3, 8), "float32")).shape == (3, 2)
    config_roundtrip(head)
