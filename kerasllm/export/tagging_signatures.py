"""A serving signature that tags every word of raw text with a BertTokenClassifier."""
import tensorflow as tf

from kerasllm.export.inputs import TEXT, signature
from kerasllm.tokenizers.segment_packing import pad_to_length
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets


def tagging_signatures(classifier, tokenizer, label_names, max_seq_length,
                       pad_to_max_length=False):
    """{"serving_default", "tag": tf.function} for a BertTokenClassifier and its tokenizer.

    tag(text [N]) returns, per word of each text (W = most words in any text of
    the batch; shorter rows are padded with "" and offsets 0):
        words string [N, W], as written in the text;
        start_offsets, end_offsets int64 [N, W], byte offsets into the UTF-8 text;
        labels string [N, W], `label_names[label]` predicted at the word's first
            piece; "" for words cut off by truncation to `max_seq_length` tokens.
    The model runs on the batch padded to its longest packed text, or to
    max_seq_length with pad_to_max_length=True (a fixed shape, for accelerators):
    the same outputs.
    """
    if len(label_names) != classifier.num_labels:
        raise ValueError(f"{len(label_names)} label names for a classifier of "
                         f"{classifier.num_labels} labels")
    names = tf.constant(list(label_names), tf.string)

    @signature(TEXT)
    def tag(text):
        aligned = tokenize_words_with_offsets(tokenizer, text)
        token_ids, segment_ids = tokenizer.join([aligned.piece_ids()], max_seq_length)
        inputs = pad_to_length(token_ids, segment_ids, max_seq_length, tokenizer.pad_id,
                               pad_to_max_length)
        predicted = tf.argmax(classifier(inputs, training=False)["logits"], axis=-1)
        positions = (aligned.first_pieces() + 1).to_tensor()  # + 1 for [CLS]
        is_word = tf.sequence_mask(aligned.words.row_lengths(), tf.shape(positions)[1])
        # A word whose first piece did not fit before the final [SEP] is not tagged.
        kept = is_word & (positions < token_ids.row_lengths()[:, None] - 1)
        # Untagged words read the last column instead (any would do).
        last = tf.cast(tf.shape(predicted)[1] - 1, positions.dtype)
        label_ids = tf.gather(predicted, tf.minimum(positions, last), batch_dims=1)
        return {
            "labels": tf.where(kept, tf.gather(names, label_ids), ""),
            "words": aligned.words.to_tensor(""),
            "start_offsets": aligned.starts.to_tensor(0),
            "end_offsets": aligned.ends.to_tensor(0),
        }

    return {"serving_default": tag, "tag": tag}
