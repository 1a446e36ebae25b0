"""What it takes to add a model family: a backbone, a registry entry and a task. A toy
decoder-only family (no BERT class involved) trains in the shared loop with layer-wise
learning rates, and its model_dir reloads it by family, with nothing changed in
kerasllm.training; and kerasllm.training imports no family or data code."""
import ast
import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import kerasllm
from kerasllm.models import registry
from kerasllm.models.backbone import Backbone, ModelConfig
from kerasllm.models.losses import masked_mean
from kerasllm.models.task import TaskModel
from kerasllm.pretrained.model_dir import describe_model_dir, load_backbone
from kerasllm.tokenizers import WordPieceTokenizer
from kerasllm.training.config import TrainConfig
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]


@dataclasses.dataclass(frozen=True)
class ToyConfig(ModelConfig):
    num_layers: int = 2
    hidden_size: int = 8
    vocab_size: int = len(VOCAB)
    initializer_range: float = 0.02


class RMSScale(keras.layers.Layer):
    """x * scale / rms(x): a norm whose only weight is called `scale`."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                     name="scale")

    def call(self, x):
        return x * self.scale * ops.rsqrt(ops.mean(ops.square(x), -1, keepdims=True) + 1e-6)


class ToyBackbone(Backbone):
    config_class = ToyConfig

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.embedding = keras.layers.Embedding(self.config.vocab_size, self.config.hidden_size)
        for i in range(self.config.num_layers):
            setattr(self, f"block_{i}", keras.layers.Dense(self.config.hidden_size, "relu"))
        self.final_norm = RMSScale()

    def depth_layers(self):
        blocks = [(getattr(self, f"block_{i}"), i + 1) for i in range(self.num_layers)]
        return [(self.embedding, 0), *blocks, (self.final_norm, self.num_layers + 1)]

    def dummy_inputs(self, seq_length):
        ids = ops.zeros((1, seq_length), "int32")
        return {"token_ids": ids, "padding_mask": ops.ones_like(ids)}

    def call(self, inputs):
        x = self.embedding(inputs["token_ids"])
        for i in range(self.num_layers):
            x = x + getattr(self, f"block_{i}")(x)
        return {"sequence_output": self.final_norm(x)}


class ToyNextToken(TaskModel):
    """Predicts each next token (no attention: a bag of the current token)."""

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        self.lm_head = self.head_dense(backbone.config.vocab_size, "lm_head")

    def call(self, inputs, training=None):
        return {"logits": self.lm_head(self.backbone(inputs)["sequence_output"])}

    def compute_loss_and_metrics(self, batch, training=False):
        logits = self(batch, training=training)["logits"][:, :-1]
        targets, weights = batch["token_ids"][:, 1:], batch["padding_mask"][:, 1:]
        losses = keras.losses.sparse_categorical_crossentropy(targets, logits,
                                                              from_logits=True)
        return masked_mean(losses, weights), {}


@pytest.fixture
def toy_family(monkeypatch):
    family = registry.Family("toy", ToyConfig, ToyBackbone, "wordpiece",
                             {"toy_tiny": ToyConfig()})
    monkeypatch.setitem(registry.FAMILIES, "toy", family)
    return family


def test_a_new_family_trains_and_reloads_without_touching_training(toy_family, tmp_path):
    family, config = registry.lookup("toy_tiny")
    assert family is toy_family
    cycle = np.tile(np.arange(5, 8, dtype="int32"), (8, 4))[:, :12]
    examples = {"token_ids": cycle, "padding_mask": np.ones_like(cycle)}

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(8)
        return tf.data.Dataset.from_tensor_slices(examples).batch(batch).repeat()

    run = TrainConfig(model_dir=str(tmp_path), train_steps=30, global_batch_size=8,
                      learning_rate=0.05, layer_decay=0.5, log_every=10, weight_decay=0.1)
    logged = []
    result = train(lambda: ToyNextToken(family.backbone_class(config)), dataset_fn, run,
                   create_strategy("one_device"), on_log=lambda s, m: logged.append(m))
    assert logged[-1]["loss"] < 0.5 * logged[0]["loss"]
    assert result.task.backbone.layer_depth(result.task.backbone.final_norm.scale) == 3

    describe_model_dir(str(tmp_path), "toy", config, WordPieceTokenizer(VOCAB))
    backbone, tokenizer = load_backbone(str(tmp_path))
    assert isinstance(backbone, ToyBackbone) and tokenizer.vocabulary == VOCAB
    for a, b in zip(backbone.get_weights(), result.task.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_imports_no_family_and_no_data_code():
    training = os.path.join(os.path.dirname(kerasllm.__file__), "training")
    imported = set()
    for name in os.listdir(training):
        if name.endswith(".py"):
            with open(os.path.join(training, name)) as f:
                for node in ast.walk(ast.parse(f.read())):
                    if isinstance(node, ast.ImportFrom) and node.module:
                        imported.add(node.module)
                    elif isinstance(node, ast.Import):
                        imported.update(alias.name for alias in node.names)
    forbidden = [m for m in imported if m.startswith(("kerasllm.models", "kerasllm.data",
                                                      "kerasllm.tokenizers",
                                                      "kerasllm.datasets"))]
    assert forbidden == [] and any(m.startswith("kerasllm.training") for m in imported)
