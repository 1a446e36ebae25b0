"""The task model every family's heads are built on: a backbone, heads, a loss."""
import keras


class TaskModel(keras.Model):
    """Base of the task models (BERT pretrainer and classifiers, and the models of
    every other family): a `backbone` (a `kerasllm.models.backbone.Backbone`) with
    heads on top.

    This is the contract `kerasllm.training` relies on: `build_for_inputs()`
    creates every weight, `compute_loss_and_metrics(batch, training)` returns
    (float32 loss scalar, {name: float32 scalar}), and `backbone.layer_depth(v)`
    and `backbone.num_layers` place each weight for layer-wise learning rates
    (heads sit above the backbone).

    Subclasses create their heads with `head_dense`, put their own constructor
    arguments in `task_config()` and, when their inputs need more than the
    backbone's, extend `dummy_inputs`.
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def head_dense(self, units, name, **kwargs):
        """A Dense head layer initialised as the backbone's own weights are."""
        return keras.layers.Dense(
            units, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=self.backbone.config.initializer_range),
            dtype=self.dtype_policy, name=name, **kwargs)

    def dummy_inputs(self, seq_length):
        """A one-example batch of `seq_length` tokens that `call` accepts."""
        return self.backbone.dummy_inputs(seq_length)

    def build_for_inputs(self, seq_length=8):
        """Creates every weight by running a dummy batch of `seq_length` tokens."""
        self(self.dummy_inputs(seq_length))
        return self

    def compute_loss_and_metrics(self, batch, training=False):
        """(loss, {metric name: value}) for one batch: float32 scalars, batch means."""
        raise NotImplementedError

    def task_config(self):
        """The subclass's constructor arguments besides the backbone."""
        return {}

    def get_config(self):
        return {"backbone": keras.saving.serialize_keras_object(self.backbone),
                **self.task_config(), "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
