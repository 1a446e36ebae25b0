"""Corpus BLEU and chrF of a translator on held-out sentence pairs (sacrebleu's
standard 13a-tokenized BLEU and character 6-gram chrF, so figures compare with
published ones).

Validation decodes greedily, one beam (`TranslationEvaluator`), each sentence
stopping at </s> or at half again its reference's length: a longer hypothesis
already scores poorly, and an untrained model would otherwise run every
sentence to the length limit.
"""
from typing import NamedTuple

import numpy as np
import sacrebleu
import tensorflow as tf

from kerasllm.export.seq2seq_signatures import seq2seq_signatures


class TranslationQuality(NamedTuple):
    bleu: float
    chrf: float
    hypotheses: list


def corpus_quality(hypotheses, references):
    """TranslationQuality of `hypotheses` against one reference each."""
    return TranslationQuality(sacrebleu.corpus_bleu(hypotheses, [references]).score,
                              sacrebleu.corpus_chrf(hypotheses, [references]).score,
                              list(hypotheses))


def translate_all(translate_with_options, sources, *, beam_size=1, length_penalty=0.6,
                  max_length=0, batch_size=64):
    """Every source translated by a `translate_with_options` function (see
    kerasllm.export.seq2seq_signatures), in batches of sources of similar length;
    a list of str in the order of `sources`. max_length: one int for every
    sentence or one per sentence, in target tokens; 0 lets a sentence have the
    signature's default length (from its source's)."""
    limits = np.broadcast_to(np.asarray(max_length, np.int32), [len(sources)])
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    translations = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        outputs = translate_with_options(
            tf.constant([sources[i] for i in rows]), tf.fill([len(rows)], beam_size),
            tf.fill([len(rows)], float(length_penalty)), tf.constant(limits[rows]))
        for i, text in zip(rows, np.asarray(outputs["translation"])):
            translations[i] = text.decode("utf-8")
    return translations


def translation_quality(translate_with_options, sources, references, **settings):
    """TranslationQuality of the translator on (sources, references); `settings` go to
    translate_all."""
    return corpus_quality(translate_all(translate_with_options, sources, **settings),
                          references)


def reference_limits(tokenizer, references):
    """int32 [N]: the target tokens each sentence may take, </s> included: half again
    its reference's tokens, plus 2."""
    counts = tokenizer.tokenize(tf.constant(references)).row_lengths().numpy()
    return (2 + 3 * counts // 2).astype(np.int32)


def greedy_translator(model, tokenizer, *, max_source_length, max_target_length):
    """The export's own translate_with_options built with one beam: the export's
    searches its widest beam in every row whatever a row asks for. With
    length_penalty 0 it decodes greedily (with a penalty, one beam may outlast
    greedy decoding)."""
    return seq2seq_signatures(model, tokenizer, max_source_length=max_source_length,
                              max_target_length=max_target_length, max_beam_size=1,
                              beam_size=1)["translate_with_options"]


class TranslationEvaluator:
    """task -> {"bleu", "chrf"} of its greedy translations (greedy_translator) of
    `sources` against `references`, in batches of `batch_size` sentences, each
    stopping at reference_limits."""

    def __init__(self, sources, references, tokenizer, *, max_source_length,
                 max_target_length, batch_size=64):
        self.sources, self.references, self.tokenizer = sources, references, tokenizer
        self.lengths = {"max_source_length": max_source_length,
                        "max_target_length": max_target_length}
        self.batch_size = batch_size
        self.limits = reference_limits(tokenizer, references)
        self._model, self._translate = None, None

    def __call__(self, model):
        if model is not self._model:  # traced once per task
            self._model = model
            self._translate = greedy_translator(model, self.tokenizer, **self.lengths)
        quality = translation_quality(self._translate, self.sources, self.references,
                                      beam_size=1, length_penalty=0.0,
                                      max_length=self.limits,
                                      batch_size=self.batch_size)
        return {"bleu": quality.bleu, "chrf": quality.chrf}
