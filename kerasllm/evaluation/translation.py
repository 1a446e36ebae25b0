"""Corpus BLEU and chrF of a translator on held-out sentence pairs (sacrebleu's
standard 13a-tokenized BLEU and character 6-gram chrF, so figures compare with
published ones)."""
from typing import NamedTuple

import numpy as np
import sacrebleu
import tensorflow as tf


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
    kerasllm.export.seq2seq_signatures), in batches; a list of str. max_length 0
    lets each sentence have the signature's default length (from its source's)."""
    translations = []
    for start in range(0, len(sources), batch_size):
        batch = sources[start:start + batch_size]
        rows = len(batch)
        outputs = translate_with_options(
            tf.constant(batch), tf.fill([rows], beam_size), tf.fill([rows], float(length_penalty)),
            tf.fill([rows], max_length))
        translations += [text.decode("utf-8") for text in np.asarray(outputs["translation"])]
    return translations


def translation_quality(translate_with_options, sources, references, **settings):
    """TranslationQuality of the translator on (sources, references); `settings` go to
    translate_all."""
    return corpus_quality(translate_all(translate_with_options, sources, **settings),
                          references)
