"""AdamW with global-norm clipping, float16 loss scaling and an optional moving
average of the weights, stepping by the learning-rate schedule of schedule.py."""
import contextlib

import keras
import tensorflow as tf

from kerasllm.training.errors import TrainingError
from kerasllm.training.schedule import WarmupDecay


class PreReducedAdamW(keras.optimizers.AdamW):
    """AdamW for gradients the training loop has already summed across replicas.

    Keras' TF optimizer all-reduces gradients itself, but only after it has
    clipped them, so under several replicas `global_clipnorm` would clip each
    replica's partial gradient. The loop all-reduces first; this optimizer then
    clips the true global gradient and skips its own (second) reduction.

    With `learning_rate_scale` (variable -> float), each variable's Adam step
    uses the scheduled rate times its scale; the decoupled weight decay keeps the
    scheduled rate (it is 1e-2 of an already small step).

    Weight decay applies to matrices and tables only, as in BERT and GPT-2: not
    to vectors (every norm's scale and offset, whatever the layer calls them),
    nor to biases (see `create_optimizer`).

    The Adam step itself is TensorFlow's fused kernel (one pass over the variable
    and its two moments) instead of Keras' six elementwise ops, which each read
    and write the whole tensor: the same update, and on CPU the optimizer is a
    quarter of a fine-tuning step, mostly memory traffic over the 12M-entry word
    embedding table.
    """

    def __init__(self, *args, learning_rate_scale=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._learning_rate_scale = learning_rate_scale
        self._scales = None

    def build(self, var_list):
        super().build(var_list)
        if self._learning_rate_scale is not None:
            self._scales = [float(self._learning_rate_scale(v)) for v in var_list]

    def _use_weight_decay(self, variable):
        return len(variable.shape) >= 2 and super()._use_weight_decay(variable)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)

    def _clip_gradients(self, grads):
        if not self.global_clipnorm:
            return super()._clip_gradients(grads)
        # Keras squares each gradient and multiplies every one by the scale even when
        # it is 1; l2_loss is one fused pass, and unclipped steps skip the multiply.
        present = [g for g in grads if g is not None]
        norm = tf.linalg.global_norm(present)
        scale = self.global_clipnorm / norm
        # Sparse (embedding) gradients made dense: in a graph, tf.cond cannot return
        # IndexedSlices from one branch and their product from the other (a Keras
        # model's fit hands them over as they come; the training loop densifies).
        present = [tf.convert_to_tensor(g) for g in present]
        clipped = iter(tf.cond(norm > self.global_clipnorm,
                               lambda: [g * tf.cast(scale, g.dtype) for g in present],
                               lambda: present))
        return [None if g is None else next(clipped) for g in grads]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        learning_rate = tf.cast(learning_rate, dtype)
        if self._scales is not None:
            learning_rate *= self._scales[index]
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        step = tf.cast(self.iterations + 1, dtype)
        # Inside a strategy's update() the moments' handles are this replica's copies.
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step), lr=learning_rate,
            beta1=tf.cast(self.beta_1, dtype), beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype))


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def layer_decay_scale(task, decay):
    """variable -> decay ** (top - depth): 1 for the task's heads and the backbone's
    top (e.g. a pooler), `decay` for the last block, ... `decay ** (num_layers + 1)`
    for the embeddings (depths from `task.backbone.layer_depth`, see
    kerasllm.models.task.TaskModel)."""
    backbone = getattr(task, "backbone", None)
    if backbone is None or not hasattr(backbone, "layer_depth"):
        raise TrainingError(f"layer-wise learning rates need a task with a backbone that "
                            f"reports layer depths; {type(task).__name__} has none")
    top = backbone.num_layers + 1

    def scale(variable):
        depth = backbone.layer_depth(variable)
        return 1.0 if depth is None else decay ** (top - depth)

    return scale


def layer_biases(model):
    """The bias of every layer of `model` that has one. A projection that keeps its
    heads as an axis has a [heads, head_size] bias, a vector all the same."""
    return [layer.bias for layer in model._flatten_layers()
            if getattr(layer, "bias", None) is not None]


def create_optimizer(config, task=None):
    """The optimizer for a TrainConfig (create it inside `strategy.scope()`); `task`,
    a TaskModel, exempts its layers' biases from weight decay and is needed for
    layer-wise learning rates (config.layer_decay < 1)."""
    scale = layer_decay_scale(task, config.layer_decay) if config.layer_decay < 1 else None
    optimizer = PreReducedAdamW(
        learning_rate_scale=scale,
        learning_rate=WarmupDecay(config.learning_rate, config.num_warmup_steps,
                                  config.train_steps, config.decay,
                                  config.end_learning_rate_fraction),
        weight_decay=config.weight_decay, beta_1=config.adam_beta_1,
        beta_2=config.adam_beta_2, epsilon=config.adam_epsilon,
        global_clipnorm=config.clip_norm or None,
        use_ema=config.ema_momentum > 0, ema_momentum=config.ema_momentum)
    if task is not None:
        optimizer.exclude_from_weight_decay(var_list=layer_biases(task))
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


@contextlib.contextmanager
def averaged_weights(optimizer, variables):
    """Within the block, `variables` (the list the optimizer was built on) hold the
    optimizer's exponential moving average of their values; afterwards the
    training values are back. Without an average (use_ema off) nothing changes.

    The average of a fine-tuning run usually generalises a little better than
    its last step (Polyak averaging); it lives in the optimizer's variables, so
    checkpoints keep it and a resumed run continues it.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
    if not inner.use_ema:
        yield
        return
    training_values = [tf.identity(v) for v in variables]
    inner.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, training_values):
            variable.assign(value)
