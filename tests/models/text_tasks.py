"""Tiny task models of every family, each with a real tokenizer, for the tests of
the Keras-library API (fit on raw text, saving, presets, the Python methods)."""
import functools

import numpy as np

import kerasllm

from kerasllm.models import registry
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.bert.pretrainer import BertPretrainer
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.seq2seq.seq2seq_lm import Seq2SeqLM
from kerasllm.tokenizers import WordPieceTokenizer, train_sentencepiece

WORDS = "the king and queen of a land far away lived in castle with their dog cat".split()


@functools.lru_cache(maxsize=None)
def lines(count=256, length=10, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(" ".join(rng.choice(WORDS, length)) for _ in range(count))


@functools.lru_cache(maxsize=None)
def sentencepiece():
    return train_sentencepiece(lines(), vocab_size=300)


def wordpiece():
    return WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])


def gpt(name="llama_tiny"):
    kerasllm.set_random_seed(1)
    tokenizer = sentencepiece()
    config = registry.get(name).replace(vocab_size=tokenizer.vocab_size,
                                        max_sequence_length=64)
    return GptCausalLM(registry.family("gpt").backbone_class(config),
                       tokenizer=tokenizer).build_for_inputs()


def seq2seq():
    kerasllm.set_random_seed(1)
    tokenizer = sentencepiece()
    config = registry.get("seq2seq_tiny").replace(vocab_size=tokenizer.vocab_size)
    return Seq2SeqLM(registry.family("seq2seq").backbone_class(config), tokenizer=tokenizer,
                     max_source_length=32, max_target_length=32).build_for_inputs()


def classifier():
    kerasllm.set_random_seed(1)
    tokenizer = wordpiece()
    config = registry.get("bert_tiny").replace(vocab_size=tokenizer.vocab_size, dropout=0.0,
                                               attention_dropout=0.0)
    return BertClassifier(registry.family("bert").backbone_class(config), num_classes=2,
                          dropout=0.0, tokenizer=tokenizer, label_names=["no", "yes"],
                          sequence_length=32).build_for_inputs()


def pretrainer():
    kerasllm.set_random_seed(1)
    tokenizer = wordpiece()
    config = registry.get("bert_tiny").replace(vocab_size=tokenizer.vocab_size, dropout=0.0,
                                               attention_dropout=0.0)
    return BertPretrainer(registry.family("bert").backbone_class(config), tokenizer=tokenizer,
                          sequence_length=32).build_for_inputs()


def pairs():
    """(sources, targets): each target the source's words reversed."""
    sources = list(lines(count=256, length=6, seed=1))
    return sources, [" ".join(reversed(s.split())) for s in sources]


def labeled():
    """(texts, labels): 1 when a text mentions the king."""
    texts = list(lines(count=256, length=6, seed=2))
    return texts, [int("king" in text) for text in texts]
