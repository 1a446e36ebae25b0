"""Serving signatures for BERT that take raw text: tokenization runs in the graph."""
import tensorflow as tf

from kerasllm.export.inputs import TEXT, TEXT_B, signature
from kerasllm.layers.mean_pooling import sentence_embedding


def bert_signatures(encoder, tokenizer, max_seq_length, mlm_head=None, top_k=5,
                    pad_to_max_length=False):
    """{signature name: tf.function} for a BERT encoder and its WordPiece tokenizer.

    serving_default(text [N]) and encode_pair(text [N], text_b [N]) return
        sequence_output float32 [N, S, H], pooled_output float32 [N, H],
        sentence_embedding float32 [N, H] (mean of the real tokens, unit length: the
        way sentence-transformers models are used), token_ids int32 [N, S],
        padding_mask int32 [N, S]
    where S is the longest packed text of the batch the model runs (at most
    max_seq_length; with server-side batching, the batch may hold other requests'
    texts too), or S = max_seq_length for every batch with pad_to_max_length=True
    (a fixed shape, for accelerators); the outputs at real positions (padding_mask
    1) are the same either way. Longer input is truncated to max_seq_length, empty
    strings give "[CLS] [SEP]". A SignatureDef has no optional inputs, so pairs get
    their own signature; an empty `text_b` row there is encoded as a single sentence.

    fill_mask(text [N]) (when `mlm_head` is given) returns, for each "[MASK]" in
    each text (M = most masks in any text of the batch):
        mask_positions int32 [N, M] (token index, -1 where a text has fewer masks),
        top_ids int32 [N, M, top_k], top_tokens string [N, M, top_k],
        top_scores float32 [N, M, top_k] (softmax probabilities).
    """

    def pack(*texts):
        return tokenizer.pack([tokenizer.tokenize(text) for text in texts], max_seq_length,
                              pad_to_max_length)

    def encode(inputs):
        outputs = encoder(inputs, training=False)
        return {
            "sequence_output": tf.cast(outputs["sequence_output"], tf.float32),
            "pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
            "sentence_embedding": sentence_embedding(outputs["sequence_output"],
                                                     inputs["padding_mask"]),
            "token_ids": inputs["token_ids"],
            "padding_mask": inputs["padding_mask"],
        }

    @signature(TEXT)
    def serving_default(text):
        return encode(pack(text))

    @signature(TEXT, TEXT_B)
    def encode_pair(text, text_b):
        return encode(pack(text, text_b))

    signatures = {"serving_default": serving_default, "encode_pair": encode_pair}
    if mlm_head is None:
        return signatures

    @signature(TEXT)
    def fill_mask(text):
        inputs = pack(text)
        is_mask = tf.equal(inputs["token_ids"], tokenizer.mask_id)
        positions = tf.RaggedTensor.from_row_lengths(
            tf.cast(tf.where(is_mask)[:, 1], tf.int32),
            tf.reduce_sum(tf.cast(is_mask, tf.int64), axis=1))
        mask_positions = positions.to_tensor(default_value=-1)
        sequence_output = encoder(inputs, training=False)["sequence_output"]
        logits = mlm_head(sequence_output, tf.maximum(mask_positions, 0))
        scores, ids = tf.math.top_k(tf.nn.softmax(tf.cast(logits, tf.float32)), k=top_k)
        return {
            "mask_positions": mask_positions,
            "top_ids": ids,
            "top_tokens": tokenizer.id_to_token(ids),
            "top_scores": scores,
        }

    signatures["fill_mask"] = fill_mask
    return signatures
