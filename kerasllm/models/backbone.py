"""What every family's backbone shares: a frozen config it is built from, weights
created from a dummy batch, (de)serialisation, and the depth of each weight."""
import dataclasses

import keras

from kerasllm.models import lora


class ModelConfig:
    """Methods shared by the families' configs, which are frozen dataclasses."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    def with_settings(self, assignments):
        """A copy with fields changed by `assignments`, strings "name=value" (as a
        command line gives them), each value read as the type the field holds
        (true/false for a bool).

        Raises:
          ValueError: an assignment without "=", an unknown field, or a value
            that is not of the field's type or that the config refuses.
        """
        changes = {}
        for assignment in assignments:
            name, equals, text = assignment.partition("=")
            if not equals:
                raise ValueError(f"{assignment!r} is not name=value")
            if name not in self.to_dict():
                raise ValueError(f"{type(self).__name__} has no field {name!r}; its fields: "
                                 f"{', '.join(self.to_dict())}")
            changes[name] = _read_as(text, getattr(self, name), name)
        return self.replace(**changes)


def _read_as(text, current, name):
    """`text` as a value of the type of `current`."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{name} is true or false, got {text!r}")
        return text.lower() == "true"
    kind = type(current) if current is not None else str
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} is a {kind.__name__}, got {text!r}") from None


class Backbone(keras.Model):
    """Base of the family backbones (BertEncoder, ...), the part a task model adds
    heads to.

    A subclass sets `config_class`, builds its layers from `self.config`, and
    implements `dummy_inputs` and `depth_layers`.
    """

    config_class = None

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = self.config_class(**config)
        self.config = config
        object.__setattr__(self, "lora_settings", None)

    @property
    def num_layers(self):
        """Transformer blocks between the embeddings (depth 0) and the top
        (depth num_layers + 1)."""
        return self.config.num_layers

    def dummy_inputs(self, seq_length):
        """A one-example batch of `seq_length` tokens that `call` accepts."""
        raise NotImplementedError

    def depth_layers(self):
        """[(layer or None, depth)]: every sublayer that holds weights and its depth,
        0 for the embeddings, i + 1 for block i, num_layers + 1 above the blocks."""
        raise NotImplementedError

    def layer_depth(self, variable):
        """Where `variable` sits, counted from the input (see depth_layers); None if
        it is not this backbone's. Layer-wise learning rates are set from it."""
        for layer, depth in self.depth_layers():
            if layer is not None and any(variable is weight for weight in layer.weights):
                return depth
        return None

    def build_for_inputs(self, seq_length=8):
        """Creates every weight by running a dummy batch of `seq_length` tokens."""
        self(self.dummy_inputs(seq_length))
        return self

    def enable_lora(self, rank, alpha=None, dropout=0.0, targets=lora.ATTENTION,
                    train_norms=False, keep_trainable=()):
        """Adds LoRA adapters of `rank` to the `targets` layers (default: attention's
        query/key/value/output; "all" adds the feed-forward layers) and freezes every
        other weight: see kerasllm.models.lora. Returns the LoraSettings."""
        if not self.built:
            self.build_for_inputs()
        object.__setattr__(self, "lora_settings", lora.enable_lora(
            self, rank, alpha=alpha, dropout=dropout, targets=targets,
            train_norms=train_norms, keep_trainable=keep_trainable))
        return self.lora_settings

    def merge_lora(self):
        """Folds the adapters into the weights: plain layers, the same outputs."""
        lora.merge_lora(self)
        object.__setattr__(self, "lora_settings", None)

    @classmethod
    def from_preset(cls, preset):
        """This backbone with the weights of a preset (see
        kerasllm.pretrained.presets; its tokenizer is the task's business:
        load_preset(preset).tokenizer)."""
        from kerasllm.pretrained import presets  # presets import the model families
        loaded = presets.load_preset(preset)
        presets.check_family(loaded, cls)
        return loaded.backbone

    def save_to_preset(self, directory, tokenizer=None):
        """Writes this backbone (and `tokenizer`) as a preset directory."""
        from kerasllm.pretrained import presets
        return presets.save_preset(self, directory, tokenizer=tokenizer)

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name,
                "lora": self.lora_settings.to_dict() if self.lora_settings else None,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        settings = config.pop("lora", None)
        backbone = cls(**config)
        if settings:  # the adapters' weights are loaded next
            backbone.enable_lora(**settings)
        return backbone
