r"""Distils a BERT text classifier into a smaller one and exports the student.

    python -m trainers.distill_bert --teacher=minilm --student=bert_tiny \
        --dataset=rt_sentences
    python -m trainers.distill_bert --teacher=saved_models/my_classifier \
        --student_init_checkpoint=model_dirs/bert_mini_pretrained \
        --train_file=train.tsv --eval_file=dev.tsv --temperature=4 --alpha=0.9

--teacher is a classifier's SavedModel export (an export root, whose newest
version is used, or a version directory), as finetune_bert writes it, or
`minilm`: saved_models/minilm_rt_sentences, the MiniLM Rotten Tomatoes classifier
of recipes/minilm_rt_sentences.flags (made with `python -m trainers.finetune_bert
--flagfile=recipes/minilm_rt_sentences.flags`). Its labels must be the data's.

The student is --student, a registered BERT config (bert_tiny, bert_mini, ...;
--student_settings changes its fields) with fresh weights, reading text with the
teacher's tokenizer; or --student_init_checkpoint, a pretrained BERT (a
pretrain_bert --model_dir, a preset, a Hugging Face directory or `minilm`) with
its own tokenizer. The teacher always reads text with its own.

Before training, the teacher's export scores every training example once (its
log-probabilities, in inference mode); each batch then carries them beside the
labels, and the student learns from both (kerasllm.models.losses.distillation_loss):

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
    + (1 - alpha) * cross-entropy(labels, student)

with T = --temperature. A label's confidence in the data (rt_sentences' raters'
agreement) is not used: the teacher's soft targets take its place.

The data flags, epochs, scoring on --eval_file, checkpoints, resuming and the
export are finetune_bert's --task=classify: the student is exported as a plain
BertClassifier with the `classify` and `classify_pair` signatures on raw text,
the best eval epoch's weights, to --export_dir (default
saved_models/<student>_<data>_from_<teacher>).
"""
import os

from absl import flags, logging

from kerasllm.export.versioned import existing_versions
from kerasllm.finetuning.distillation import ClassifierTeacher
from kerasllm.finetuning.tasks import ClassificationTask
from kerasllm.models import BertEncoder
from kerasllm.models.bert.distillation import (DistillationError, DistilledClassifier,
                                               check_distillation_settings)
from kerasllm.pretrained import MINILM, load_pretrained, pretrained_name
from trainers import common, finetune_bert, shared_flags

# Teachers by name: what a recipe exports there, and the command that makes it.
RECIPE_TEACHERS = {
    MINILM: (os.path.join(shared_flags.EXPORT_ROOT, "minilm_rt_sentences"),
             "python -m trainers.finetune_bert --flagfile=recipes/minilm_rt_sentences.flags"),
}


def define_flags(fv):
    flags.DEFINE_string("teacher", MINILM,
                        "The classifier to learn from: its SavedModel export (an export root "
                        "or a version directory), or "
                        f"{', '.join(RECIPE_TEACHERS)}: the export its recipe makes "
                        f"({', '.join(path for path, _ in RECIPE_TEACHERS.values())}).",
                        flag_values=fv)
    shared_flags.define_model_flags(fv, "bert", "bert_tiny", flag="student")
    flags.DEFINE_string("student_init_checkpoint", None,
                        "Start the student from this pretrained BERT (a pretrain_bert "
                        "--model_dir, a preset, a Hugging Face directory, or minilm) and its "
                        "tokenizer, instead of a fresh --student.", flag_values=fv)
    flags.DEFINE_float("temperature", 2.0,
                       "T: both models' logits are divided by T before the softmax of the "
                       "soft targets; above 1 shows the student more of how the teacher "
                       "ranks the wrong labels. Must be above 0.", flag_values=fv)
    flags.DEFINE_float("alpha", 0.5,
                       "Weight of the teacher's soft targets in the loss, in [0, 1]; the "
                       "labels get 1 - alpha (0: plain fine-tuning).", flag_values=fv)
    finetune_bert.define_data_flags(fv)
    shared_flags.define_export_flags(fv, "<student>_<data>_from_<teacher>")
    shared_flags.define_training_flags(fv, model_dir=None, train_steps=1_000_000,
                                       batch_size=32, learning_rate=1e-4)


def teacher_export(teacher):
    """The export path --teacher names; DistillationError, with the command that
    makes it, for a recipe's teacher not made yet."""
    if teacher not in RECIPE_TEACHERS:
        return teacher
    path, command = RECIPE_TEACHERS[teacher]
    if not existing_versions(path):
        raise DistillationError(f"--teacher={teacher} is the classifier exported to {path}, "
                                f"which holds no export yet; make it with: {command}")
    return path


def export_name(path):
    """The name of the export root of a version directory."""
    return pretrained_name(os.path.dirname(path))


def student_start(fv, teacher):
    """(BertConfig, weights or None, tokenizer) the student starts from."""
    if fv.student_init_checkpoint:
        encoder, tokenizer = load_pretrained(fv.student_init_checkpoint)
        return encoder.config, encoder.get_weights(), tokenizer
    config = shared_flags.model_config_from_flags(fv, "bert", "distill_bert", flag="student")
    tokenizer = teacher.tokenizer()
    return config.replace(vocab_size=tokenizer.vocab_size), None, tokenizer


def run(fv):
    check_distillation_settings(fv.temperature, fv.alpha)
    if fv.student_init_checkpoint:
        if fv["student"].present or fv["student_settings"].present:
            raise DistillationError("pass either --student (and --student_settings) or "
                                    "--student_init_checkpoint, not both")
        finetune_bert.check_init_checkpoint(fv.student_init_checkpoint,
                                            "student_init_checkpoint", "distill_bert")
    teacher = ClassifierTeacher(teacher_export(fv.teacher))
    student_name = (pretrained_name(fv.student_init_checkpoint) if fv.student_init_checkpoint
                    else fv.student)
    run_name = (f"{student_name}_{finetune_bert.data_name(fv)}_from_"
                f"{export_name(teacher.path)}")
    export_root = common.export_root(fv, run_name)
    model_dir = fv.model_dir or os.path.join("model_dirs", run_name)
    common.check_run_dir(model_dir, "bert", "distill_bert")
    task = ClassificationTask(pooling=fv.pooling, dropout=fv.dropout, label_confidence=False)
    train_examples, eval_examples, label_names = finetune_bert.load_examples(fv, task)
    teacher.check_labels(label_names)

    config, weights, tokenizer = student_start(fv, teacher)
    config = finetune_bert.with_encoder_dropout(fv, config)
    max_seq_length = common.sequence_length(fv, config, "the student")
    logging.info("scoring the %d training examples with the teacher %s", len(train_examples),
                 teacher.path)
    train_examples = teacher.label(
        task.training_examples(train_examples, tokenizer, max_seq_length),
        batch_size=fv.eval_batch_size)

    def build_task():
        encoder = BertEncoder(config).build_for_inputs()
        if weights is not None:
            encoder.set_weights(weights)
        return DistilledClassifier(task.build_model(encoder, label_names),
                                   temperature=fv.temperature, alpha=fv.alpha)

    finetune_bert.train_and_export(
        fv, task, build_task, tokenizer, train_examples, eval_examples, label_names,
        max_seq_length, model_dir=model_dir, export_root=export_root,
        metadata={"family": "bert", "task": "classify", "config": config.to_dict(),
                  "init_checkpoint": fv.student_init_checkpoint,
                  "tokenizer_source": fv.student_init_checkpoint or teacher.tokenizer_source,
                  "teacher": teacher.path, "temperature": fv.temperature,
                  "alpha": fv.alpha},
        exported=lambda distilled: distilled.student)


if __name__ == "__main__":
    common.main("distill_bert", define_flags, run)
