"""The position-wise feed-forward networks of decoder blocks: GPT-2's two-layer MLP
and the gated SwiGLU of Llama-style models."""
import keras

from kerasllm.layers.matmul_einsum_dense import dense


def activation_function(name):
    """The activation function called `name`: Keras' own names, plus "gelu_tanh",
    GELU's tanh approximation (the "gelu_new" GPT-2 was trained with; Keras' "gelu"
    is the exact erf form)."""
    if name == "gelu_tanh":
        return lambda x: keras.activations.gelu(x, approximate=True)
    return keras.activations.get(name)


@keras.saving.register_keras_serializable(package="kerasllm")
class FeedForward(keras.layers.Layer):
    """output(activation(intermediate(x))): Dense to `intermediate_size`, then back
    to the input width (GPT-2's MLP, with activation "gelu_tanh").

    Call args:
        inputs: float [..., hidden].
    Returns:
        float [..., hidden].
    """

    def __init__(self, intermediate_size, activation="gelu_tanh", use_bias=True,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.use_bias = use_bias
        self.initializer_range = initializer_range

    def build(self, input_shape):
        hidden = input_shape[-1]
        self.intermediate_dense = dense(
            self.intermediate_size, activation=activation_function(self.activation),
            use_bias=self.use_bias, initializer_range=self.initializer_range,
            dtype=self.dtype_policy, name="intermediate")
        self.intermediate_dense.build(input_shape)
        self.output_dense = dense(hidden, use_bias=self.use_bias,
                                  initializer_range=self.initializer_range,
                                  dtype=self.dtype_policy, name="output")
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.built = True

    def call(self, inputs):
        return self.output_dense(self.intermediate_dense(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "intermediate_size": self.intermediate_size,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "initializer_range": self.initializer_range,
        }


@keras.saving.register_keras_serializable(package="kerasllm")
class GatedFeedForward(keras.layers.Layer):
    """down(activation(gate(x)) * up(x)): a gated linear unit (Shazeer, 2020); with
    activation "silu" the SwiGLU of Llama-style models. Three Dense layers, `gate`
    and `up` to `intermediate_size` and `down` back to the input width, kept apart
    (not fused) so that they map one to one onto checkpoints' gate/up/down weights.

    Call args:
        inputs: float [..., hidden].
    Returns:
        float [..., hidden].
    """

    def __init__(self, intermediate_size, activation="silu", use_bias=False,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.use_bias = use_bias
        self.initializer_range = initializer_range

    def build(self, input_shape):
        hidden = input_shape[-1]
        self.gate_dense = dense(self.intermediate_size,
                                activation=activation_function(self.activation),
                                use_bias=self.use_bias, initializer_range=self.initializer_range,
                                dtype=self.dtype_policy, name="gate")
        self.gate_dense.build(input_shape)
        self.up_dense = dense(self.intermediate_size, use_bias=self.use_bias,
                              initializer_range=self.initializer_range,
                              dtype=self.dtype_policy, name="up")
        self.up_dense.build(input_shape)
        self.down_dense = dense(hidden, use_bias=self.use_bias,
                                initializer_range=self.initializer_range,
                                dtype=self.dtype_policy, name="down")
        self.down_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.built = True

    def call(self, inputs):
        return self.down_dense(self.gate_dense(inputs) * self.up_dense(inputs))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "intermediate_size": self.intermediate_size,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "initializer_range": self.initializer_range,
        }
