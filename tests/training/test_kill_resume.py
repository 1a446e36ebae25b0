"""Kill and resume, proven: a training process killed with SIGKILL at a random step
after its first checkpoint, then started again with the same command, ends with
the same weights, optimizer state and RNG state, bit for bit, as a run never
interrupted (with --deterministic), having trained on every example of every epoch
exactly once. So do the trainers of every family, each on its own input pipeline:
train_gpt, pretrain_bert, train_seq2seq, finetune_bert and finetune_gpt (its LoRA
checkpoints holding the adapters alone).

Why bit-identical is possible: the checkpoint holds every piece of state a step
reads (weights, Adam's moments and iterations, so the learning rate too, dropout's
RNG state, the step); the input pipeline is a pure function of (seed, batch
number), so the resumed run gets the very batches the first one would have; and
op determinism makes each step the same computation in another process.

The kill step is random; KILL_RESUME_SEED fixes it (a failure names the seed).
"""
import os
import random
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.datasets.shakespeare import default_corpus_files
from kerasllm.tokenizers.sentencepiece import MODEL_FILE, train_sentencepiece
from kerasllm.tokenizers.wordpiece_vocab import (VOCAB_FILE, learn_wordpiece_vocab,
                                                 save_vocab)
from kerasllm.training.loop import checkpointed_step, dataset_fn_at_step, lost_peer
from tests.convert.tiny_checkpoint import TINY_VOCAB, write_checkpoint
from tests.models import text_tasks
from tests.training import kill_resume_run as toy
from tests.training.kill_resume import (Process, assert_same_checkpoint, clusters, record,
                                        step_losses, tf_config, toy_run)

SEED = int(os.environ.get("KILL_RESUME_SEED", random.randrange(10**6)))


@pytest.fixture
def rng():
    return random.Random(SEED)


def input_context(pipeline=0, pipelines=2, replicas=4):
    return tf.distribute.InputContext(num_input_pipelines=pipelines,
                                      input_pipeline_id=pipeline,
                                      num_replicas_in_sync=replicas)


def test_each_pipeline_resumes_at_the_batches_its_replicas_took():
    """3 steps of 2 micro-batches, each pipeline feeding 2 of 4 replicas: 12 batches."""
    asked = []

    def seekable(input_context, start_batch=0):
        asked.append(start_batch)
        return tf.data.Dataset.range(start_batch, 100)

    def plain(input_context):
        return tf.data.Dataset.range(100)

    for dataset_fn in (seekable, plain):
        first = next(iter(dataset_fn_at_step(dataset_fn, 3, 2)(input_context())))
        assert int(first) == 12
    assert asked == [12]
    assert int(next(iter(dataset_fn_at_step(seekable, 0, 2)(input_context())))) == 0


def check_record(context, trained, reference, batches_per_epoch, examples):
    """`trained` ([(batch number, ids)] of the killed run's steps that a checkpoint
    kept, then the resumed run's) is `reference`'s, batch for batch, and every epoch
    holds each of `examples` exactly once."""
    assert [number for number, _ in trained] == list(range(len(reference))), context
    assert [ids for _, ids in trained] == [ids for _, ids in reference], context
    for epoch in range(len(trained) // batches_per_epoch):
        seen = sorted(i for _, ids in trained[epoch * batches_per_epoch:
                                               (epoch + 1) * batches_per_epoch] for i in ids)
        assert seen == list(examples), f"{context}: epoch {epoch} saw {seen}"


def last_step(process, pattern, stream="stdout"):
    """The last step whose progress line `pattern` is in `process`'s `stream`."""
    return max(int(s) for s in re.findall(pattern.format(step=r"(\d+)"),
                                          getattr(process, stream), re.MULTILINE))


def kill_after(process, step, pattern, stream="stdout"):
    """SIGKILLs `process` once its `stream` shows the progress line `pattern` of
    `step` (it may get a little further); the last step it printed."""
    process.wait_for(pattern.format(step=step), stream=stream)
    process.kill()
    return last_step(process, pattern, stream)


TOY_STEP = r"^step {step} loss"


def test_a_killed_run_resumes_bit_for_bit_with_each_example_once_an_epoch(tmp_path, rng):
    """24 steps, 4 epochs of the toy task; killed at a random step after the first
    checkpoint (step 4), then run again."""
    steps = 24
    model_dir = tmp_path / "model"
    aim = rng.randrange(5, steps - 2)
    context = f"KILL_RESUME_SEED={SEED}, kill at step {aim}"
    # The uninterrupted run trains alongside, in the time the other sleeps between steps.
    reference = toy_run(tmp_path, "reference", tmp_path / "reference", steps)
    first = toy_run(tmp_path, "first", model_dir, steps, sleep=0.1)
    reached = kill_after(first, aim, TOY_STEP)
    reference.finish_ok()
    resumed_at = checkpointed_step(str(model_dir))
    assert 4 <= resumed_at <= reached < steps, context
    # What the rerun will restore is the uninterrupted run's state at that step
    # (Adam's moments and iterations, whose schedule gives the learning rate, the
    # dropout RNG, the weights).
    assert_same_checkpoint(f"{model_dir}/ckpt-{resumed_at}",
                           f"{tmp_path}/reference/ckpt-{resumed_at}")

    again = toy_run(tmp_path, "again", model_dir, steps).finish_ok()
    # Step counter: the rerun restored the newest checkpoint and went on from it.
    assert f"resumed from {model_dir}/ckpt-{resumed_at} at step {resumed_at}" in again.stderr
    assert f"input pipeline 0 starts at batch {resumed_at}" in again.stderr
    want = step_losses(reference.stdout)
    got = step_losses(again.stdout)
    assert sorted(got) == list(range(resumed_at + 1, steps + 1)), context
    # Each step after the resume computed the very loss of the uninterrupted run.
    assert got == {s: want[s] for s in got}, context
    # The two runs end in the same state.
    assert_same_checkpoint(f"{model_dir}/ckpt-{steps}", f"{tmp_path}/reference/ckpt-{steps}")
    assert '"iterations": 24' in again.stdout
    # Data position: the batches the killed run trained on after its checkpoint
    # were lost with it; the rerun took them again, not the ones after.
    killed = record(tmp_path, "first")
    assert killed[:reached] == record(tmp_path, "reference")[:reached], context
    trained = [batch for batch in killed if batch[0] < resumed_at] + record(tmp_path, "again")
    check_record(context, trained, record(tmp_path, "reference"),
                 toy.NUM_EXAMPLES // toy.BATCH_PER_WORKER, range(toy.NUM_EXAMPLES))


TRAINER_STEP = r"step {step}/\d+ "  # absl's progress line, on stderr


def progress_lines(output):
    """{step: the progress line without its tokens/s}."""
    return {int(m[1]): m[2] for m in re.finditer(
        r"step (\d+)/\d+  (.*lr \S+)  \d+ tok/s", output)}


def check_trainer_resumes(tmp_path, rng, trainer, *args, steps=40):
    """`python -m trainers.<trainer> args` checkpointing every 4 steps and logging
    every step: killed at a random step after its first checkpoint and run again,
    it logs the uninterrupted run's every step from its checkpoint on (loss,
    accuracy, gradient norm, learning rate) and ends with its weights, Adam
    moments, iterations and dropout RNG states, exactly; its input pipeline
    started at the checkpoint's batch without reading the ones before."""
    def command(model_dir, *extra):
        return [sys.executable, "-m", f"trainers.{trainer}", *args, f"--train_steps={steps}",
                "--checkpoint_every=4", "--log_every=1", "--noexport", "--deterministic",
                f"--model_dir={model_dir}", *extra]

    model_dir = tmp_path / "model"
    aim = rng.randrange(5, steps - 16)
    context = f"KILL_RESUME_SEED={SEED}, {trainer}, kill at step {aim}"
    # Side by side: most of each process's time is single-threaded start-up and tracing.
    reference = Process(command(tmp_path / "reference", "--keep_checkpoints=100"),
                        tmp_path, "reference")
    first = Process(command(model_dir), tmp_path, "first")
    reached = kill_after(first, aim, TRAINER_STEP, stream="stderr")
    reference.finish_ok()
    resumed_at = checkpointed_step(str(model_dir))
    assert 4 <= resumed_at <= reached < steps, context
    assert_same_checkpoint(f"{model_dir}/ckpt-{resumed_at}",
                           f"{tmp_path}/reference/ckpt-{resumed_at}")

    again = Process(command(model_dir), tmp_path, "again").finish_ok()
    assert f"resumed from {model_dir}/ckpt-{resumed_at} at step {resumed_at}" in again.stderr
    assert f"input pipeline 0 starts at batch {resumed_at}" in again.stderr
    want, got = progress_lines(reference.stderr), progress_lines(again.stderr)
    assert sorted(got) == list(range(resumed_at + 1, steps + 1)), context
    assert got == {s: want[s] for s in got}, context
    assert_same_checkpoint(f"{model_dir}/ckpt-{steps}", f"{tmp_path}/reference/ckpt-{steps}")
    names = tf.train.load_checkpoint(f"{model_dir}/ckpt-{steps}").get_variable_to_shape_map()
    assert any(name.startswith("rng/") for name in names)  # dropout's state is kept


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two plays, cut short; a 400-piece SentencePiece vocabulary and a WordPiece
    vocab.txt learned from them once (so that every run reads the same token ids)."""
    directory = tmp_path_factory.mktemp("corpus")
    lines = []
    for path in default_corpus_files():
        if os.path.basename(path).startswith(("hamlet", "macbeth")):
            with open(path, encoding="utf-8") as f:
                text = f.read()[:20000]
            (directory / os.path.basename(path)).write_text(text)
            lines += [line for line in text.splitlines() if line.strip()]
    train_sentencepiece(lines, vocab_size=400).save(str(directory))
    save_vocab(learn_wordpiece_vocab([lines], 400), str(directory / VOCAB_FILE))
    return directory


def test_train_gpt_killed_at_a_random_step_resumes_bit_for_bit(tmp_path, corpus, rng):
    """gpt_tiny with dropout, on windows of a token stream (kerasllm.data.lm_examples)."""
    check_trainer_resumes(
        tmp_path, rng, "train_gpt", "--model=gpt_tiny", f"--corpus={corpus}/*.txt",
        "--document_per_file", f"--tokenizer_file={corpus}/{MODEL_FILE}",
        "--max_seq_length=32", "--batch_size=8", "--eval_fraction=0", "--learning_rate=3e-3")


# Each about 45 s on 2 busy cores, like the one above: three trainer processes,
# start-up and tracing.
@pytest.mark.slow
def test_pretrain_bert_killed_at_a_random_step_resumes_bit_for_bit(tmp_path, corpus, rng):
    """bert_tiny on next-sentence pairs drawn each epoch and masks drawn each batch
    (kerasllm.data.bert_pretraining)."""
    check_trainer_resumes(
        tmp_path, rng, "pretrain_bert", "--model=bert_tiny", f"--corpus={corpus}/*.txt",
        f"--vocab_file={corpus}/{VOCAB_FILE}", "--max_seq_length=32", "--batch_size=8",
        "--max_predictions_per_seq=5", "--learning_rate=3e-3")


@pytest.mark.slow
def test_train_seq2seq_killed_at_a_random_step_resumes_bit_for_bit(tmp_path, corpus, rng):
    """seq2seq_tiny on length-bucketed parallel text (kerasllm.data.parallel_text):
    each line of the plays translated into itself reversed, word by word."""
    lines = [line.strip() for path in sorted(corpus.glob("*.txt"))
             for line in path.read_text().splitlines() if line.strip()][:300]
    source, target = tmp_path / "train.src", tmp_path / "train.tgt"
    source.write_text("".join(f"{line}\n" for line in lines))
    target.write_text("".join(" ".join(reversed(line.split())) + "\n" for line in lines))
    check_trainer_resumes(
        tmp_path, rng, "train_seq2seq", "--model=seq2seq_tiny", f"--train_source={source}",
        f"--train_target={target}", f"--tokenizer_file={corpus}/{MODEL_FILE}",
        "--max_source_length=32", "--max_target_length=32", "--batch_size=8",
        "--learning_rate=3e-3")


@pytest.mark.slow
def test_finetune_bert_killed_at_a_random_step_resumes_bit_for_bit(tmp_path, rng):
    """A BertClassifier on a tiny checkpoint, on length-bucketed labelled text
    (kerasllm.data.labeled_text), epoch after epoch."""
    words = np.random.default_rng(0)
    rows = [" ".join(words.choice(TINY_VOCAB[5:], words.integers(1, 12))) for _ in range(64)]
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "".join(
        f"{text}\t{'cat' if 'cat' in text.split() else 'other'}\n" for text in rows))
    checkpoint = write_checkpoint(tmp_path / "tiny_bert")
    check_trainer_resumes(
        tmp_path, rng, "finetune_bert", f"--init_checkpoint={checkpoint}",
        f"--train_file={tmp_path / 'train.tsv'}", "--max_seq_length=16", "--batch_size=8",
        "--epochs=5", "--learning_rate=1e-2")


@pytest.mark.slow
def test_finetune_gpt_lora_killed_at_a_random_step_resumes_bit_for_bit(tmp_path, rng):
    """LoRA adapters (with dropout) on a tiny GPT preset, instruction pairs bucketed
    by length (kerasllm.data.chat_examples): the checkpoints hold the adapters and
    their optimizer state alone, and the frozen base is loaded again on resume."""
    preset = str(tmp_path / "base")
    text_tasks.gpt().save_to_preset(preset)
    words = text_tasks.WORDS
    (tmp_path / "train.tsv").write_text("prompt\tresponse\n" + "".join(
        f"{a} {b}\t{b} {a}\n" for a in words for b in words[:4]))
    check_trainer_resumes(
        tmp_path, rng, "finetune_gpt", f"--init_checkpoint={preset}",
        f"--train_file={tmp_path / 'train.tsv'}", "--max_seq_length=32", "--batch_size=8",
        "--lora_rank=4", "--lora_targets=all", "--lora_dropout=0.1", "--learning_rate=1e-2",
        "--max_new_tokens=8")


# What the surviving worker caught in the test below: worker 1 killed (the chief,
# the coordination service's leader, misses its heartbeats), worker 0 killed (its
# port refuses the next RPC).
HEARTBEATS_MISSED = (
    "Collective ops is aborted by: Error reported from /job:worker/task:1: The following "
    "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe "
    "tasks have crashed.")
CONNECTION_REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:60821: Failed "
    "to connect to remote host: Connection refused\nAdditional GRPC error information from "
    "remote target /job:worker/replica:0/task:0 while calling "
    "/tensorflow.WorkerService/CompleteInstance:")


WORKER = "/job:worker/replica:0/task:{}"


@pytest.mark.parametrize("message, survivor, lost", [
    (HEARTBEATS_MISSED, 0, 1),
    (CONNECTION_REFUSED, 1, 0),
    # Neither phrasing: the first task named other than the survivor.
    (f"on {WORKER.format(1)}: peer {WORKER.format(2)} is gone", 1, 2),
    ("socket closed", 1, None)],
    ids=["heartbeats_missed", "connection_refused", "another_task_named", "none_named"])
def test_the_lost_worker_is_read_from_tensorflows_message(message, survivor, lost):
    error = tf.errors.UnavailableError(None, None, message)
    assert lost_peer(error, WORKER.format(survivor)) == (
        None if lost is None else WORKER.format(lost))


def start_workers(tmp_path, name, model_dir, cluster, steps, sleep=0.0):
    return [toy_run(tmp_path, f"{name}{index}", model_dir, steps, sleep,
                    strategy="multi_worker_mirrored", tf_config=tf_config(cluster, index))
            for index in range(2)]


# 25-45 s on 2 cores: three pairs of worker processes, two at once; a killed
# worker 1 is noticed when the chief misses its heartbeats (10 s), a killed chief
# at once.
def test_a_killed_worker_stops_the_job_and_both_resume_from_the_checkpoint(tmp_path, rng):
    """Two multi_worker_mirrored workers: SIGKILL one at a random step after the
    first checkpoint; the other stops at once with one line naming the lost
    worker; both started again resume from the chief's newest checkpoint and end
    as an uninterrupted pair of workers does."""
    steps = 24
    model_dir = tmp_path / "model"
    victim, aim = rng.randrange(2), rng.randrange(5, steps - 2)
    context = f"KILL_RESUME_SEED={SEED}, kill worker {victim} at step {aim}"
    reference_cluster, first_cluster, again_cluster = clusters(3)
    # The uninterrupted pair trains alongside, in the time the other pair sleeps
    # between steps and waits for the lost worker's heartbeats.
    references = start_workers(tmp_path, "reference", tmp_path / "reference",
                               reference_cluster, steps)
    workers = start_workers(tmp_path, "first", model_dir, first_cluster, steps, sleep=0.1)
    kill_after(workers[victim], aim, TOY_STEP)
    survivor = workers[1 - victim]
    assert survivor.finish(timeout=60) == 1, context
    for worker in references:
        worker.finish_ok()
    # The chief saves only after printing a step, which the victim may not have printed.
    reached = max(last_step(worker, TOY_STEP) for worker in workers)
    # (Above it, TensorFlow's own C++ log lines, which the trainers silence.)
    errors = [line for line in survivor.stderr.splitlines()
              if line.startswith("kill_resume_run: error:")]
    assert "Traceback" not in survivor.stderr, survivor.tail()
    assert len(errors) == 1 and errors[0].startswith(
        f"kill_resume_run: error: lost contact with worker /job:worker/replica:0/task:{victim}"
        " after step "), survivor.tail()
    resumed_at = checkpointed_step(str(model_dir))
    assert 4 <= resumed_at <= reached < steps, context
    assert f"{model_dir}/ckpt-{resumed_at} stays the newest" in errors[0]
    assert_same_checkpoint(f"{model_dir}/ckpt-{resumed_at}",
                           f"{tmp_path}/reference/ckpt-{resumed_at}")

    again = [w.finish_ok() for w in start_workers(tmp_path, "again", model_dir,
                                                    again_cluster, steps)]
    for index, worker in enumerate(again):
        assert (f"resumed from {model_dir}/ckpt-{resumed_at} at step {resumed_at}"
                in worker.stderr), worker.tail()
        assert step_losses(worker.stdout) == step_losses(again[0].stdout)
        killed = record(tmp_path, f"first{index}")
        trained = [batch for batch in killed if batch[0] < resumed_at] + record(
            tmp_path, f"again{index}")
        check_record(f"{context}, worker {index}", trained,
                     record(tmp_path, f"reference{index}"),
                     toy.NUM_EXAMPLES // toy.BATCH_PER_WORKER,
                     range(index * toy.NUM_EXAMPLES, (index + 1) * toy.NUM_EXAMPLES))
    want = step_losses((tmp_path / "reference0.out").read_text())
    got = step_losses(again[0].stdout)
    assert sorted(got) == list(range(resumed_at + 1, steps + 1)), context
    assert got == {s: want[s] for s in got}, context
    assert_same_checkpoint(f"{model_dir}/ckpt-{steps}", f"{tmp_path}/reference/ckpt-{steps}")
    assert not [n for n in os.listdir(model_dir) if n.startswith(".worker")]
