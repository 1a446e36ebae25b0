"""Text -> tf.data for training: corpora, example files of each task, BERT's
pretraining examples (next-sentence pairs, dynamic masking) and their TFRecords,
and length-bucketed batching.

Typical use (the tokenizer from kerasllm.tokenizers):
    documents = read_documents("books/*.txt")
    tokenizer = WordPieceTokenizer(learn_wordpiece_vocab(documents, 8000))
    dataset = pretraining_dataset(documents, tokenizer, max_seq_length=128, batch_size=32)
"""
from kerasllm.data.bert_pretraining import pretraining_dataset, pretraining_dataset_fn
from kerasllm.data.corpus import read_documents, split_documents

__all__ = ["pretraining_dataset", "pretraining_dataset_fn", "read_documents",
           "split_documents"]
