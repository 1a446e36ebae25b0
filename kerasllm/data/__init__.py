"""Text data for BERT pretraining: corpora, WordPiece vocab and tokenizer, packing, masking.

Typical use:
    documents = read_documents(default_corpus_files())
    tokenizer = WordPieceTokenizer(learn_wordpiece_vocab(documents, 8000))
    dataset = pretraining_dataset(documents, tokenizer, max_seq_length=128, batch_size=32)
"""
from kerasllm.data.corpus import read_documents, split_documents
from kerasllm.data.errors import CorpusError, DataError, VocabError
from kerasllm.data.packing import pack_segments
from kerasllm.data.pretraining import (make_nsp_pairs, pretraining_dataset,
                                       pretraining_dataset_fn, tokenize_documents)
from kerasllm.data.shakespeare import default_corpus_files
from kerasllm.data.tfrecords import read_pretraining_tfrecords, write_pretraining_tfrecords
from kerasllm.data.tokenizer import WordPieceTokenizer
from kerasllm.data.vocab import learn_wordpiece_vocab, load_vocab, save_vocab

__all__ = [
    "CorpusError", "DataError", "VocabError", "WordPieceTokenizer", "default_corpus_files",
    "learn_wordpiece_vocab", "load_vocab", "make_nsp_pairs", "pack_segments",
    "pretraining_dataset", "pretraining_dataset_fn", "read_documents",
    "read_pretraining_tfrecords", "save_vocab", "split_documents", "tokenize_documents",
    "write_pretraining_tfrecords",
]
