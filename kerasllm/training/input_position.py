"""Where each input pipeline resumes: the data position is not checkpointed at all,
it follows from the step.

Each input pipeline has read exactly `step * grad_accum_steps *
replicas_per_pipeline` batches by a checkpoint's step, so a resumed run asks
`dataset_fn` for its dataset from that batch on (`start_batch`); a dataset_fn
whose batches are a pure function of (seed, batch number) can start there at no
cost (kerasllm.data.lm_examples.lm_dataset: a per-epoch order computed by the op
of `tf.random.experimental.index_shuffle`, so batch k needs no batch before it).

Why not checkpoint the tf.data iterator instead: the iterator's state carries its
shuffle and prefetch buffers (10,000 windows of text per pipeline, written at
every checkpoint), pipelines fed by Python generators (`from_generator`) cannot
be saved at all, and under MultiWorkerMirroredStrategy each worker's iterator
state would live only in its own checkpoint copy, so every worker's copy would
have to be kept and agreed on. Counting batches needs none of that: the chief's
checkpoint alone restores every worker. A dataset_fn without a `start_batch`
argument still resumes in place, by reading and dropping the batches already
trained on (`Dataset.skip`, exact if its pipeline is seeded; slow for long runs).
"""
import inspect

from absl import logging

START_BATCH = "start_batch"


def can_seek(dataset_fn):
    """True if `dataset_fn` takes a `start_batch` argument."""
    try:
        return START_BATCH in inspect.signature(dataset_fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature
        return False


def dataset_fn_at_step(dataset_fn, step, grad_accum_steps):
    """`dataset_fn` wrapped to start each input pipeline at the batch it reaches
    after `step` optimizer steps: every replica takes one batch per micro-batch,
    and a pipeline feeds num_replicas_in_sync / num_input_pipelines replicas."""
    seekable = can_seek(dataset_fn)

    def positioned(input_context):
        replicas_per_pipeline = (input_context.num_replicas_in_sync
                                 // input_context.num_input_pipelines)
        start = step * grad_accum_steps * replicas_per_pipeline
        if seekable:
            if start:
                logging.info("input pipeline %d starts at batch %d",
                             input_context.input_pipeline_id, start)
            return dataset_fn(input_context, start_batch=start)
        dataset = dataset_fn(input_context)
        if start:
            logging.warning("input pipeline %d: the dataset_fn takes no start_batch, so "
                            "the %d batches already trained on are read again and dropped",
                            input_context.input_pipeline_id, start)
            dataset = dataset.skip(start)
        return dataset

    return positioned
