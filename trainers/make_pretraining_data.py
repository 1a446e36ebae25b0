"""Tokenizes a corpus once into TFRecords of BERT sentence pairs.

    python -m trainers.make_pretraining_data --corpus='books/*.txt' \
        --vocab_file=vocab.txt --output=data/books.tfrecord --pair_epochs=5
    python -m trainers.pretrain_bert --train_tfrecords='data/*.tfrecord' --vocab_file=vocab.txt

For corpora too large to tokenize at the start of every run. Masking stays
dynamic: it is drawn afresh when the records are read.
"""
from absl import app, flags

from kerasllm.data import tfrecords, vocab as vocab_lib
from kerasllm.data.errors import DataError
from kerasllm.data.tokenizer import WordPieceTokenizer
from trainers.entry_point import one_line_errors_main
from trainers.pretrain_bert import read_corpus

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "TFRecord file to write (atomically).", required=True)
flags.DEFINE_integer("pair_epochs", 1,
                     "Times the corpus is cut into pairs afresh (BERT's dupe factor).",
                     lower_bound=1)


def run():
    if not FLAGS.vocab_file:
        raise DataError("--vocab_file is required: the records store token ids")
    tokenizer = WordPieceTokenizer(vocab_lib.load_vocab(FLAGS.vocab_file))
    count = tfrecords.write_pretraining_tfrecords(
        read_corpus(FLAGS.corpus, FLAGS.document_per_file), tokenizer, FLAGS.output,
        FLAGS.max_seq_length, num_epochs_of_pairs=FLAGS.pair_epochs, seed=FLAGS.seed)
    print(f"wrote {count} pairs to {FLAGS.output}")


if __name__ == "__main__":
    app.run(one_line_errors_main(
        "make_pretraining_data", run, DataError))
