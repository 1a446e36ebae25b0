"""What every converter shares: reading a checkpoint's files, a plan that fills each
model weight from one tensor, checking the whole plan before any weight is touched,
and a report of what was used; and the way back, the tensors a plan writes.

A family's converter (e.g. hf_bert) writes the plan: a list of `Assignment`s from
its model's weights to the checkpoint's tensor names. The same plan serves both
directions, so a checkpoint written by kerasllm is read back by construction.
"""
import dataclasses
import json

import keras
import numpy as np
from safetensors import SafetensorError, safe_open

from kerasllm.convert.errors import ConversionError

_MAX_LISTED = 10


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What a converter did with every checkpoint tensor and every model weight.

    Attributes:
      config: the model config built from the checkpoint's settings.
      tokenizer: the tokenizer's settings (see kerasllm.tokenizers.Tokenizer.settings).
      assigned: {model weight path: checkpoint tensor name}.
      skipped_tensors: {checkpoint tensor name: why it is not used}.
      unassigned_weights: {model weight path: why it keeps its random init}.
    """

    config: object
    tokenizer: dict
    assigned: dict
    skipped_tensors: dict
    unassigned_weights: dict

    def __str__(self):
        settings = ", ".join(f"{k}={v}" for k, v in self.tokenizer.items() if k != "kind")
        lines = [f"assigned {len(self.assigned)} weights from the checkpoint; "
                 f"{self.tokenizer.get('kind')} tokenizer {settings}"]
        lines += [f"skipped tensor {name}: {why}" for name, why in self.skipped_tensors.items()]
        lines += [f"left at random init {path}: {why}"
                  for path, why in self.unassigned_weights.items()]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One model weight filled from one checkpoint tensor of `shape`; with
    `transpose` the tensor is transposed first (PyTorch Linear weights are
    [out, in], Keras kernels [in, out]), then reshaped to the weight's shape."""

    variable: keras.Variable
    tensor: str
    shape: tuple
    transpose: bool = False


def linear(dense, tensor_prefix, in_size, out_size):
    """The kernel and bias of a Keras Dense-like layer from a PyTorch Linear's
    `<prefix>.weight` [out, in] and `<prefix>.bias` [out]."""
    return [Assignment(dense.kernel, tensor_prefix + ".weight", (out_size, in_size),
                       transpose=True),
            Assignment(dense.bias, tensor_prefix + ".bias", (out_size,))]


def layer_norm(norm, tensor_prefix, size):
    """A Keras LayerNormalization's gamma/beta from `<prefix>.weight`/`.bias`."""
    return [Assignment(norm.gamma, tensor_prefix + ".weight", (size,)),
            Assignment(norm.beta, tensor_prefix + ".bias", (size,))]


def planned_tensors(plan):
    """{tensor name: float32 np.ndarray of the Assignment's shape}: the checkpoint
    tensors `plan` reads, made from the model's current weights (the inverse of
    apply_plan: a transposed weight is transposed back)."""
    tensors = {}
    for a in plan:
        value = np.asarray(keras.ops.convert_to_numpy(a.variable), dtype=np.float32)
        tensors[a.tensor] = (np.ascontiguousarray(value.reshape(a.shape[::-1]).T)
                             if a.transpose else value.reshape(a.shape))
    return tensors


def listing(items):
    """The sorted items joined by commas, at most ten and a count of the rest."""
    items = sorted(items)
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def read_json(path):
    """The JSON object (dict) in the file at `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"Cannot read {path} as JSON: {error}.") from error
    if not isinstance(value, dict):
        raise ConversionError(f"{path} holds a JSON {type(value).__name__}, expected an "
                              "object of settings.")
    return value


def read_safetensors(path):
    """{name: float32 or integer np.ndarray} of a .safetensors file (the NumPy API:
    no pickled code is ever run)."""
    try:
        with safe_open(path, framework="np") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, TypeError, ValueError) as error:
        # bfloat16 tensors have no NumPy dtype and end up here too.
        raise ConversionError(f"Cannot read {path} with the safetensors NumPy API: {error}. "
                              "Save the checkpoint as float32 or float16 safetensors.") \
            from error
    return {name: value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
            for name, value in tensors.items()}


def without_prefix(tensors, prefix, path):
    """{name without `prefix`: (name in the file, tensor)}."""
    renamed = {}
    for name, value in tensors.items():
        key = name.removeprefix(prefix)
        if key in renamed:
            raise ConversionError(f"{path} has both {renamed[key][0]!r} and {name!r}.")
        renamed[key] = (name, value)
    return renamed


def check_plan(plan, tensors, skipped, path, model_kind):
    """Raises one ConversionError listing every missing, unexpected, misshapen or
    non-float tensor of `tensors` ({key: (name in the file, array)}), before any
    weight is touched; `skipped` names the tensors deliberately left out."""
    planned = {a.tensor for a in plan}
    present = [a for a in plan if a.tensor in tensors]
    problems = {
        "missing tensors": sorted(planned - tensors.keys()),
        f"unexpected tensors (not part of a {model_kind})": [
            name for key, (name, _) in tensors.items()
            if key not in planned and name not in skipped],
        "tensors whose shape disagrees with config.json": [
            f"{tensors[a.tensor][0]} {tuple(tensors[a.tensor][1].shape)} (config.json implies "
            f"{a.shape})" for a in present if tuple(tensors[a.tensor][1].shape) != a.shape],
        "tensors that are not floating point": [
            f"{tensors[a.tensor][0]} ({tensors[a.tensor][1].dtype})" for a in present
            if not np.issubdtype(tensors[a.tensor][1].dtype, np.floating)],
    }
    found = [f"{kind}: {listing(names)}" for kind, names in problems.items() if names]
    if found:
        raise ConversionError(f"{path} does not match its config.json: " + "; ".join(found))


def apply_plan(plan, tensors, model, unassigned):
    """Copies each planned tensor into its weight; returns {weight path: tensor name}.

    Every weight of `model` must be assigned or listed in `unassigned` ({path:
    why}): a weight added to a model that its converter does not fill fails
    loudly rather than stay random unnoticed."""
    assigned = {}
    for a in plan:
        name, value = tensors[a.tensor]
        a.variable.assign((value.T if a.transpose else value).reshape(a.variable.shape))
        assigned[a.variable.path] = name
    forgotten = [v.path for v in model.weights
                 if v.path not in assigned and v.path not in unassigned]
    if forgotten:
        raise AssertionError(f"the converter does not know how to fill {listing(forgotten)}.")
    return assigned
