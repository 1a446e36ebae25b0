"""Serving signatures that translate with an encoder-decoder: tokenization, the encoder,
beam search over the cached decoder (kerasllm.generation.beam_search) and
detokenization all run inside the graph, so TF Serving takes a sentence and returns
its translation, with the beam size, length penalty and length limit per sentence.

TF Serving batches requests by concatenating every input along its first axis and
requires every input in each request, so every setting is an input of shape
[batch]; `translate` (= serving_default) takes the text alone and uses the
defaults fixed at export. The beam search is traced at the exported widest beam
and each sentence searches at its own width (up to it), so requests asking for
different beam sizes batch together.

Token layout (the one kerasllm.data.parallel_text trains with): a source is its
tokens then </s>; a target is <s>, its tokens, </s>; the decoder starts from <s>
and a hypothesis ends at </s>.
"""
import functools

import tensorflow as tf

from kerasllm.export.inputs import LENGTH_PENALTY_RANGE, TEXT, clamped, signature
from kerasllm.generation.beam_search import beam_search
from kerasllm.generation.compiled import compiled_decoding
from kerasllm.generation.prompts import Prompts

SOURCE = tf.TensorSpec([None], tf.string, name="source")
TARGET = tf.TensorSpec([None], tf.string, name="target")
SETTINGS = {
    "beam_size": tf.TensorSpec([None], tf.int32, name="beam_size"),
    "length_penalty": tf.TensorSpec([None], tf.float32, name="length_penalty"),
    "max_length": tf.TensorSpec([None], tf.int32, name="max_length"),
}


def default_max_length(source_lengths, cap):
    """int32 [N]: the target length a sentence is allowed by default, twice its source
    tokens plus 10 (translations are rarely longer), at most `cap`."""
    return tf.minimum(2 * source_lengths + 10, cap)


def seq2seq_signatures(model, tokenizer, *, max_source_length, max_target_length,
                       max_beam_size=4, beam_size=4, length_penalty_alpha=0.6, compiled=False):
    """{signature name: tf.function} for a seq2seq task model and its tokenizer; the
    same functions are Seq2SeqLM's Python methods (translate, score), which pass
    `compiled`: the beam search compiled with XLA inside them (never in an export).

    translate_with_options(text [N], beam_size [N] (clipped to [1,
    `max_beam_size`]), length_penalty [N] (GNMT alpha; 0 = log-probability alone,
    as is NaN; clipped to [-10, 10]), max_length [N] (target tokens, </s>
    included, at most `max_target_length`; 0 or less = the default,
    default_max_length of the source)) returns
        translation string [N], the best hypothesis;
        score float32 [N], its log-probability / ((5 + length) / 6) ** alpha;
        translations string [N, max_beam_size], the n-best, best first ("" past the
          sentence's own beam size);
        scores float32 [N, max_beam_size] (-inf past it);
        tokens string [N, max_target_length], the best hypothesis' tokens as text, its
          </s> included ("" after it), and token_log_probs float32 [N,
          max_target_length], each one's log-probability under the model (0 after).
    translate(text [N]) = serving_default: `beam_size` beams, `length_penalty_alpha`,
    at most default_max_length target tokens; returns translation and score.
    score(source [N], target [N]) returns log_probability float32 [N], log p(target
    tokens and </s> | source) under teacher forcing, and num_tokens int32 [N], how
    many tokens that sums over (the length the penalty above is taken at): an
    n-best entry ending in </s> scores log_probability / penalty(num_tokens).

    A source longer than `max_source_length` - 1 tokens is cut to its first ones (a
    target to its first `max_target_length` - 2 in `score`). An empty source (no
    tokens) translates to "" with score 0. Bytes that are not UTF-8 are read as
    U+FFFD by the tokenizer. Inputs with another number of rows than the first are
    an InvalidArgument (see kerasllm.export.inputs).
    """
    bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    decode = (compiled_decoding(beam_search, model) if compiled
              else functools.partial(beam_search, model.generation_step, model.init_cache))

    def tokens(text, most):
        """int32 ragged [N, (<= most)]: the first `most` tokens of each text."""
        return tf.cast(tokenizer.tokenize(text)[:, :most], tf.int32)

    def ends_with(ids, token):
        return tf.concat([ids, tf.fill([ids.nrows(), 1], token)], axis=1)

    def source_batch(text):
        """(source_ids int32 [N, S], padding mask [N, S], source tokens int32 [N] before
        </s>); sources are padded to the batch's longest."""
        ids = tokens(text, max_source_length - 1)
        source = ends_with(ids, eos)
        source_ids = source.to_tensor(pad)
        mask = tf.sequence_mask(source.row_lengths(), tf.shape(source_ids)[1], tf.int32)
        return source_ids, mask, tf.cast(ids.row_lengths(), tf.int32)

    def token_log_probs(source_ids, source_mask, target_ids, target_mask):
        """float32 [N, T - 1]: log p(target token t | source, tokens before it) of
        target_ids [N, T] (<s> first) under teacher forcing, 0 where target_mask
        [N, T] is 0."""
        logits = model({"source_ids": source_ids, "source_padding_mask": source_mask,
                        "target_ids": target_ids[:, :-1],
                        "target_padding_mask": target_mask[:, :-1]}, training=False)["logits"]
        picked = tf.gather(tf.nn.log_softmax(tf.cast(logits, tf.float32)),
                           target_ids[:, 1:], batch_dims=2)
        return picked * tf.cast(target_mask[:, 1:], tf.float32)

    def search(text, widths, alpha, limits, with_tokens=False):
        source_ids, source_mask, source_lengths = source_batch(text)
        context = model.encode_context(source_ids, source_mask)
        rows = tf.shape(text)[0]
        start = Prompts(tf.fill([rows, 1], tf.cast(bos, tf.int32)), tf.ones([rows], tf.int32))
        beams = decode(start, max_target_length, max_beam_size, length_penalty_alpha=alpha,
                       stop_token_ids=tf.constant([eos], tf.int32), pad_id=pad,
                       context=context, beams_per_row=widths, max_new_tokens_per_row=limits)
        flat_ids = tf.reshape(beams.token_ids, [-1, max_target_length])
        flat_lengths = tf.reshape(beams.lengths, [-1])
        last = tf.gather(flat_ids, tf.maximum(flat_lengths - 1, 0), batch_dims=1)
        count = flat_lengths - tf.cast((flat_lengths > 0) & tf.equal(last, eos), tf.int32)
        texts = tf.reshape(
            tokenizer.detokenize(tf.RaggedTensor.from_tensor(flat_ids, lengths=count)),
            [rows, max_beam_size])
        empty = tf.equal(source_lengths, 0)[:, None]
        texts = tf.where(empty, "", texts)
        # An empty source has one translation, "", certain.
        scores = tf.where(empty, tf.where(tf.range(max_beam_size) == 0, 0.0, float("-inf")),
                          beams.scores)
        outputs = {"translation": texts[:, 0], "score": scores[:, 0],
                   "translations": texts, "scores": scores}
        if with_tokens:
            best, lengths = beams.token_ids[:, 0], beams.lengths[:, 0]
            kept = tf.sequence_mask(lengths, max_target_length) & ~empty
            outputs["tokens"] = tf.where(kept, tokenizer.token_texts(best), "")
            outputs["token_log_probs"] = token_log_probs(
                source_ids, source_mask, tf.concat([start.token_ids, best], axis=1),
                tf.concat([tf.ones([rows, 1], tf.int32), tf.cast(kept, tf.int32)], axis=1))
        return outputs

    def length_limits(text, max_length):
        source_lengths = tf.cast(tokens(text, max_source_length - 1).row_lengths(), tf.int32)
        return tf.where(max_length > 0, tf.minimum(max_length, max_target_length),
                        default_max_length(source_lengths, max_target_length))

    @signature(TEXT, *SETTINGS.values())
    def translate_with_options(text, beam_size, length_penalty, max_length):
        return search(text, clamped(beam_size, 1, max_beam_size),
                      clamped(length_penalty, *LENGTH_PENALTY_RANGE),
                      length_limits(text, max_length), with_tokens=True)

    @signature(TEXT)
    def translate(text):
        rows = tf.shape(text)
        result = search(text, tf.fill(rows, min(beam_size, max_beam_size)),
                        tf.fill(rows, float(length_penalty_alpha)),
                        length_limits(text, tf.zeros(rows, tf.int32)))
        return {"translation": result["translation"], "score": result["score"]}

    @signature(SOURCE, TARGET)
    def score(source, target):
        source_ids, source_mask, _ = source_batch(source)
        target_ids = ends_with(tf.concat(
            [tf.fill([tf.shape(target)[0], 1], tf.cast(bos, tf.int32)),
             tokens(target, max_target_length - 2)], axis=1), eos)
        dense = target_ids.to_tensor(pad)
        mask = tf.sequence_mask(target_ids.row_lengths(), tf.shape(dense)[1], tf.int32)
        return {"log_probability": tf.reduce_sum(
                    token_log_probs(source_ids, source_mask, dense, mask), axis=1),
                "num_tokens": tf.reduce_sum(mask[:, 1:], axis=1)}

    return {"serving_default": translate, "translate": translate,
            "translate_with_options": translate_with_options, "score": score}


def warmup_inputs():
    """Sample values of the non-text inputs, for the export's warmup requests."""
    texts = ["In the beginning", "And God said, Let there be light: and there was light.",
             "word " * 300]
    return {"translate_with_options": {"text": texts, "beam_size": [1, 4, 2],
                                       "length_penalty": [0.6, 0.6, 1.0],
                                       "max_length": [8, 64, 16]},
            "score": {"source": texts, "target": ["En el principio", "Y dijo Dios", "palabra"]}}
