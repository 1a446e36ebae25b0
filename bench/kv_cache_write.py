"""Writing one decoding step's keys and values into the KV caches, two ways, in one
process: a scatter at (row, key or value, slot) triples (TensorScatterUpdate, what
kerasllm.layers.attention.write_to_cache does) and a strided slice update of the slot
(TensorStridedSliceUpdate). Both are plain TensorFlow kernels, which TF Serving runs
with XLA off (keras.ops.slice_update lowers to XlaDynamicUpdateSlice, which it cannot).
The strided update wins here, alone in a loop, but not inside SmolLM2's exported
`generate` (docs/benchmarks/decode.md), so the scatter stays.

    python -m bench.kv_cache_write          # SmolLM2-135M's caches: 30 layers, 3 KV heads of 64

Each way runs a tf.while_loop of --steps writes into every layer's cache, as the
decoding loop does, timed after one untimed call, alternating over --repeats; the
figure is ms per decoding step (all layers), and the ratio is the one to read.
"""
import statistics
import time

import tensorflow as tf
from absl import app, flags

from bench.tables import markdown_table

FLAGS = flags.FLAGS
flags.DEFINE_integer("layers", 30, "Caches written each step.")
flags.DEFINE_integer("kv_heads", 3, "Key/value heads.")
flags.DEFINE_integer("head_size", 64, "Head size.")
flags.DEFINE_integer("max_length", 160, "Cache slots (prompt + new tokens).")
flags.DEFINE_integer("steps", 128, "Decoding steps per timed call.")
flags.DEFINE_integer("repeats", 3, "Alternating timed calls of each way.")
flags.DEFINE_list("batch_sizes", ["1", "8"], "Rows.")


def scatter_write(cache, update, slot):
    batch = tf.shape(cache)[0]
    shape = tf.stack([batch, 2, 1])
    indices = tf.stack([tf.broadcast_to(tf.range(batch)[:, None, None], shape),
                        tf.broadcast_to(tf.range(2)[None, :, None], shape),
                        tf.broadcast_to(tf.reshape(slot, [1, 1, 1]), shape)], axis=-1)
    return tf.tensor_scatter_nd_update(cache, indices, update)


def strided_write(cache, update, slot):
    shape = tf.shape(cache)
    return tf.raw_ops.TensorStridedSliceUpdate(
        input=cache, begin=tf.stack([0, 0, slot, 0, 0]),
        end=tf.stack([shape[0], 2, slot + 1, shape[3], shape[4]]),
        strides=tf.ones([5], tf.int32), value=update)


WAYS = {"TensorScatterUpdate": scatter_write, "TensorStridedSliceUpdate": strided_write}


def decoding_loop(write, batch_size):
    cache_shape = [batch_size, 2, FLAGS.max_length, FLAGS.kv_heads, FLAGS.head_size]

    @tf.function(jit_compile=False)
    def loop():
        def step(slot, caches):
            update = tf.fill([batch_size, 2, 1, FLAGS.kv_heads, FLAGS.head_size],
                             tf.cast(slot, tf.float32))
            return slot + 1, [write(cache, update, slot) for cache in caches]
        caches = [tf.zeros(cache_shape) for _ in range(FLAGS.layers)]
        _, caches = tf.while_loop(lambda slot, _: slot < FLAGS.steps, step, [0, caches])
        return tf.add_n([tf.reduce_sum(cache) for cache in caches])

    return loop


def main(argv):
    del argv
    rows = []
    for batch_size in map(int, FLAGS.batch_sizes):
        loops = {name: decoding_loop(write, batch_size) for name, write in WAYS.items()}
        sums = {name: float(loop()) for name, loop in loops.items()}
        if len(set(sums.values())) != 1:
            raise AssertionError(f"the two ways wrote different caches: {sums}")
        times = {name: [] for name in loops}
        for _ in range(FLAGS.repeats):
            for name, loop in loops.items():
                start = time.perf_counter()
                loop()
                times[name].append(1000 * (time.perf_counter() - start) / FLAGS.steps)
        scatter, strided = (statistics.median(times[name]) for name in WAYS)
        rows.append([str(batch_size), f"{scatter:.2f}", f"{strided:.2f}",
                     f"{strided / scatter:.2f}"])
    print("\n".join(markdown_table(
        ["batch", "scatter ms/step", "strided update ms/step", "strided / scatter"], rows)))


if __name__ == "__main__":
    app.run(main)
