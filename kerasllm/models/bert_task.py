"""What every model built on a BertEncoder shares: holding the encoder, building on
a dummy batch, heads initialised like the encoder, and (de)serialisation."""
import keras

from kerasllm.models.bert import dummy_text_inputs


class BertTaskModel(keras.Model):
    """Base of the task models (pretrainer, classifiers, span QA).

    Subclasses create their heads with `head_dense`, put their own constructor
    arguments in `task_config()` and, when their inputs need more than the text
    tensors, extend `dummy_inputs`.
    """

    def __init__(self, encoder, uses_pooler=True, **kwargs):
        """`uses_pooler=False` (a head that reads only the token outputs) freezes
        the encoder's pooler: no loss reaches it, and a trainable weight without
        a gradient makes the optimizer warn on every run."""
        super().__init__(**kwargs)
        self.encoder = encoder
        if not uses_pooler:
            encoder.pooler.trainable = False

    def head_dense(self, units, name, **kwargs):
        """A Dense head layer initialised as the encoder's own weights are."""
        return keras.layers.Dense(
            units, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=self.encoder.config.initializer_range),
            dtype=self.dtype_policy, name=name, **kwargs)

    def dummy_inputs(self, seq_length):
        """A one-example batch of `seq_length` tokens that `call` accepts."""
        return dummy_text_inputs(seq_length)

    def build_for_inputs(self, seq_length=8):
        """Creates every weight by running a dummy batch of `seq_length` tokens."""
        self(self.dummy_inputs(seq_length))
        return self

    def task_config(self):
        """The subclass's constructor arguments besides the encoder."""
        return {}

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                **self.task_config(), "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
