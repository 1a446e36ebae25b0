"""The compiled training step: `num_steps` optimizer steps per tf.function call,
each over `grad_accum_steps` micro-batches on every replica, with one all-reduce."""
import tensorflow as tf

from kerasllm.training.errors import TrainingError

TOKENS = "tokens"
# The index, within one call of the train function, of its first step whose loss
# or gradient norm is NaN or infinite (-1: none).
FIRST_NONFINITE = "first_nonfinite_step"


def count_tokens(batch):
    """The tokens of a batch, for throughput: the real (non-padding) ones where the
    batch marks padding (`padding_mask`, or `*_padding_mask` per sequence as in
    seq2seq), else every id of its `*token_ids` features."""
    masks = [v for k, v in batch.items() if k.endswith("padding_mask")]
    ids = [v for k, v in batch.items() if k.endswith("token_ids")]
    if not masks and not ids:
        raise TrainingError(f"a training batch needs token_ids or a padding_mask to count "
                            f"tokens, found only {sorted(batch)}")
    if masks:
        return tf.add_n([tf.reduce_sum(tf.cast(m, tf.float32)) for m in masks])
    return tf.add_n([tf.cast(tf.size(i), tf.float32) for i in ids])


def make_train_function(task, optimizer, strategy, config):
    """A tf.function running `num_steps` optimizer steps from a distributed iterator,
    returning the metrics averaged over those steps (with `gradient_norm`, the
    global norm of each step's gradient before clipping), the tokens they saw
    (summed) and FIRST_NONFINITE. Under float16 loss scaling an overflowing
    gradient is no fault (the optimizer skips that step and lowers the scale), so
    only the loss is checked there.

    Gradient accumulation happens here, not in Keras' optimizer: its
    `gradient_accumulation_steps` puts the cross-replica all-reduce inside a
    `cond`, which `strategy.run` under MirroredStrategy rejects ("merge_call
    called while defining a new graph"), and it would clip each replica's partial
    gradient. Here each replica sums its micro-batch gradients, one all-reduce
    follows, and the optimizer (so the learning-rate schedule) steps once.
    """
    variables = task.trainable_variables
    accum = config.grad_accum_steps
    # Each replica's mean loss over one micro-batch, divided so that the all-reduced
    # sum of gradients is the gradient of the mean loss over the global batch.
    loss_divisor = float(strategy.num_replicas_in_sync * accum)

    def micro_batch_gradients(batch):
        with tf.GradientTape() as tape:
            loss, metrics = task.compute_loss_and_metrics(batch, training=True)
            scaled = optimizer.scale_loss(loss / loss_divisor)
        return tape.gradient(scaled, variables), dict(metrics, loss=loss)

    # A function of its own, traced once however many micro-batches call it. With
    # jit_compile, XLA compiles this forward and backward pass, the bulk of the
    # work; the all-reduce and the optimizer update stay outside, as
    # synchronisation points inside a nested tf.function fail under MirroredStrategy.
    micro_batch_gradients = tf.function(micro_batch_gradients, jit_compile=config.jit_compile)

    def replica_step(batches):
        grads, metrics_sum, tokens = None, None, 0.0
        for batch in batches:
            g, metrics = micro_batch_gradients(batch)
            # Embedding gradients arrive as IndexedSlices, which do not add up.
            grads = g if grads is None else [
                None if a is None else tf.convert_to_tensor(a) + tf.convert_to_tensor(b)
                for a, b in zip(grads, g)]
            metrics_sum = metrics if metrics_sum is None else {
                k: metrics_sum[k] + metrics[k] for k in metrics}
            tokens += count_tokens(batch)
        grads = sum_over_replicas(grads)
        # Embedding gradients stay sparse across the all-reduce; clipping and the
        # Adam step would each turn them into the dense table, so do it once here.
        grads = [None if g is None else tf.convert_to_tensor(g) for g in grads]
        # A variable the loss never reaches (the pooler under a masked-LM-only
        # objective) has no gradient; it is left as it is, without Keras' warning.
        updates = [(g, v) for g, v in zip(grads, variables) if g is not None]
        gradient_norm = tf.linalg.global_norm([g for g, _ in updates])
        optimizer.apply([g for g, _ in updates], [v for _, v in updates])
        metrics = {k: v / accum for k, v in metrics_sum.items()}
        metrics["gradient_norm"] = gradient_norm / optimizer.scale_loss(1.0)
        return metrics, tokens

    names = []  # the metric names, known once the step has been traced
    checked = ["loss"] + ([] if config.mixed_precision == "mixed_float16"
                          else ["gradient_norm"])

    @tf.autograph.experimental.do_not_convert
    def one_step_as_vector(iterator):
        """One optimizer step; its metrics (then the tokens) as one float32 vector,
        so the loop below carries a fixed-type value and traces the step once."""
        batches = [next(iterator) for _ in range(accum)]
        metrics, tokens = strategy.run(replica_step, args=(batches,))
        names[:] = sorted(metrics)
        reduced = [strategy.reduce(tf.distribute.ReduceOp.MEAN, metrics[k], axis=None)
                   for k in names]
        reduced.append(strategy.reduce(tf.distribute.ReduceOp.SUM, tokens, axis=None))
        return tf.stack(reduced)

    @tf.function
    def train_steps(iterator, num_steps):
        history = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            history = history.write(i, one_step_as_vector(iterator))
        history = history.stack()
        means = tf.reduce_mean(history[:, :-1], axis=0)
        faults = tf.reduce_any(tf.logical_not(tf.math.is_finite(
            tf.gather(history, [names.index(name) for name in checked], axis=1))), axis=1)
        first_fault = tf.where(tf.reduce_any(faults),
                               tf.argmax(tf.cast(faults, tf.int32), output_type=tf.int32), -1)
        return dict(zip(names, tf.unstack(means)),
                    **{TOKENS: tf.reduce_sum(history[:, -1]), FIRST_NONFINITE: first_fault})

    return train_steps


def sum_over_replicas(grads):
    """Each gradient summed over the replicas. A weight the loss does not reach (a
    pooler no pretraining head reads) has None for its gradient, in every
    micro-batch; it stays None, which all_reduce itself refuses."""
    present = [g for g in grads if g is not None]
    summed = iter(tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in grads]
