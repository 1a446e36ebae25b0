"""A serving signature that answers a question from a context with a BertSpanQA."""
import tensorflow as tf

from kerasllm.export.inputs import CONTEXT, QUESTION, signature
from kerasllm.models.bert.span_qa import best_spans, context_mask
from kerasllm.tokenizers.segment_packing import pad_to_length
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets


def qa_signatures(span_qa, tokenizer, max_seq_length, pad_to_max_length=False):
    """{"serving_default", "answer": tf.function} for a BertSpanQA and its tokenizer.

    answer(question [N], context [N]) packs "[CLS] question [SEP] context [SEP]"
    (trimmed round-robin to `max_seq_length` tokens) and returns
        answer string [N], the context's bytes between the offsets: whole words,
            as written, with what lies between them;
        start_offset, end_offset int64 [N], byte offsets into the UTF-8 context;
        score float32 [N], p(start) * p(end) of the best span (see best_spans).
    A row whose context is empty or trimmed away gets "", offsets 0 and score 0.
    The model runs on the batch padded to its longest packed pair, or to
    max_seq_length with pad_to_max_length=True (a fixed shape, for accelerators):
    the same outputs.
    """

    @signature(QUESTION, CONTEXT)
    def answer(question, context):
        aligned = tokenize_words_with_offsets(tokenizer, context)
        token_ids, segment_ids = tokenizer.join(
            [tokenizer.tokenize(question), aligned.piece_ids()], max_seq_length)
        inputs = pad_to_length(token_ids, segment_ids, max_seq_length, tokenizer.pad_id,
                               pad_to_max_length)
        outputs = span_qa(inputs, training=False)
        starts, ends, scores = best_spans(
            outputs["start_logits"], outputs["end_logits"],
            context_mask(inputs, tokenizer.sep_id), span_qa.max_answer_length)
        found = starts >= 0
        # "[CLS] question [SEP]" are the segment-0 tokens; context piece k follows.
        context_start = tf.reduce_sum(tf.cast(segment_ids == 0, tf.int32), axis=1)
        # Pieces past the input were trimmed away, so max_seq_length columns suffice.
        piece_starts, piece_ends = (offsets.to_tensor(0, shape=[None, max_seq_length])
                                    for offsets in aligned.piece_offsets())

        def offset_at(piece_offsets, token_index):
            piece = tf.clip_by_value(token_index - context_start, 0, max_seq_length - 1)
            return tf.where(found, tf.gather(piece_offsets, piece, batch_dims=1),
                            tf.zeros_like(piece, tf.int64))

        start_offset, end_offset = offset_at(piece_starts, starts), offset_at(piece_ends, ends)
        return {
            "answer": tf.strings.substr(context, start_offset, end_offset - start_offset),
            "start_offset": start_offset,
            "end_offset": end_offset,
            "score": scores,
        }

    return {"serving_default": answer, "answer": answer}
