r"""Tokenizes a corpus once into TFRecords of BERT sentence pairs.

    python -m trainers.make_pretraining_data --corpus='books/*.txt' \
        --vocab_file=vocab.txt --output=data/books.tfrecord --pair_epochs=5
    python -m trainers.pretrain_bert --train_tfrecords='data/*.tfrecord' --vocab_file=vocab.txt

For corpora too large to tokenize at the start of every run. Masking stays
dynamic: it is drawn afresh when the records are read.
"""
from absl import flags

from kerasllm.data import bert_pretraining_tfrecords
from kerasllm.errors import DataError
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from trainers import common
from trainers.pretrain_bert import define_corpus_flags


def define_flags(fv):
    define_corpus_flags(fv)
    flags.DEFINE_string("output", None, "TFRecord file to write (atomically).", required=True,
                        flag_values=fv)
    flags.DEFINE_integer("pair_epochs", 1,
                         "Times the corpus is cut into pairs afresh (BERT's dupe factor).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed for cutting the pairs.", flag_values=fv)


def run(fv):
    if not fv.vocab_file:
        raise DataError("--vocab_file is required: the records store token ids")
    tokenizer = WordPieceTokenizer.from_vocab_file(fv.vocab_file)
    count = bert_pretraining_tfrecords.write_pretraining_tfrecords(
        common.read_corpus(fv), tokenizer, fv.output, fv.max_seq_length,
        num_epochs_of_pairs=fv.pair_epochs, seed=fv.seed)
    print(f"wrote {count} pairs to {fv.output}")


if __name__ == "__main__":
    common.main("make_pretraining_data", define_flags, run)
