"""Text -> tf.data for training: corpora, example files of each task, BERT's
pretraining examples (next-sentence pairs, dynamic masking) and their TFRecords,
language-model windows, parallel text, and the batching they share
(kerasllm.data.batching): every training stream is a pure function of (seed,
batch number), so a resumed run starts at any batch without reading the ones
before it, and each input pipeline reads its own share.

Typical use (the tokenizer from kerasllm.tokenizers):
    documents = read_documents("books/*.txt")
    tokenizer = WordPieceTokenizer(learn_wordpiece_vocab(documents, 8000))
    dataset = pretraining_dataset(documents, tokenizer, max_seq_length=128, batch_size=32)
"""
from kerasllm.data.bert_pretraining import pretraining_dataset, pretraining_dataset_fn
from kerasllm.data.corpus import read_documents, split_documents

__all__ = ["pretraining_dataset", "pretraining_dataset_fn", "read_documents",
           "split_documents"]
