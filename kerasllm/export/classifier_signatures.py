"""Serving signatures that classify raw text (or text pairs) with a BertClassifier."""
import tensorflow as tf

from kerasllm.export.inputs import TEXT, TEXT_B, signature


def classifier_signatures(classifier, tokenizer, label_names, max_seq_length,
                          pad_to_max_length=False):
    """{"serving_default", "classify", "classify_pair": tf.function} for a
    BertClassifier and the WordPiece tokenizer it was trained with.

    classify(text [N]) and classify_pair(text [N], text_b [N]) return
        probabilities float32 [N, C] (softmax over the C classes),
        label_id int32 [N] (the most probable class),
        label string [N] (label_names[label_id]).
    Texts longer than max_seq_length tokens are truncated as in training; an
    empty `text_b` row in classify_pair is classified as a single text. The model
    runs on the batch padded to its longest packed text, or to max_seq_length with
    pad_to_max_length=True (a fixed shape, for accelerators): the same outputs.
    serving_default is classify.
    """
    if len(label_names) != classifier.num_classes:
        raise ValueError(f"{len(label_names)} label names for a classifier of "
                         f"{classifier.num_classes} classes")
    names = tf.constant(list(label_names), tf.string)

    def classify_segments(*texts):
        inputs = tokenizer.pack([tokenizer.tokenize(text) for text in texts], max_seq_length,
                                pad_to_max_length)
        probabilities = tf.nn.softmax(classifier(inputs, training=False)["logits"])
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "label_id": label_id,
                "label": tf.gather(names, label_id)}

    @signature(TEXT)
    def classify(text):
        return classify_segments(text)

    @signature(TEXT, TEXT_B)
    def classify_pair(text, text_b):
        return classify_segments(text, text_b)

    return {"serving_default": classify, "classify": classify, "classify_pair": classify_pair}
