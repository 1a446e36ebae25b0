"""Loads a Hugging Face BERT checkpoint directory into a BertEncoder and tokenizer.

The directory is the one `save_pretrained` writes: `config.json` (sizes),
`model.safetensors` (weights; read with the safetensors NumPy API, so no
pickled code is ever run), `vocab.txt`, and optionally `tokenizer_config.json`
or `tokenizer.json` (whether the vocabulary is cased).

Layout differences the conversion bridges:
  * A PyTorch Linear stores its weight as [out, in] and computes x W^T + b;
    Keras kernels are [in, out]: every Linear weight is transposed.
  * Our attention projections keep the heads as separate axes: query/key/value
    kernels [hidden, heads, head_size] and biases [heads, head_size], the output
    kernel [heads, head_size, hidden]. The checkpoint's flat `hidden` axis is
    heads-major (head h owns features h*head_size ... (h+1)*head_size - 1), so a
    row-major reshape splits it.
  * LayerNorm "weight"/"bias" are our "gamma"/"beta".
"""
import dataclasses
import json
import os

import keras
import numpy as np
from safetensors import SafetensorError, safe_open

from kerasllm.convert.errors import ConversionError
from kerasllm.data.errors import VocabError
from kerasllm.data.tokenizer import WordPieceTokenizer
from kerasllm.data.vocab import load_vocab
from kerasllm.models.bert import BertEncoder
from kerasllm.models.configs import BertConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"

# Task models (BertForMaskedLM, ...) name the backbone's tensors "bert.<name>".
_BACKBONE_PREFIX = "bert."
_SKIPPED_TENSORS = {
    "embeddings.position_ids": "index buffer 0..max_position-1, recomputed by BertEmbedding",
    "embeddings.token_type_ids": "all-zero segment-id buffer, not a weight",
}
_PRETRAINING_HEAD_PREFIX = "cls."
# Hugging Face's "gelu" is the exact erf form, as is Keras's "gelu".
_ACTIVATIONS = {"gelu": "gelu"}
_REQUIRED_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                   "intermediate_size", "vocab_size")
# Values the BERT paper (and Hugging Face's BertConfig) use when a key is absent.
_DEFAULTS = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
             "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}
_MAX_LISTED = 10


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What load_hf_bert did with every checkpoint tensor and every encoder weight.

    Attributes:
      config: the BertConfig built from config.json.
      lowercase: whether the tokenizer case-folds.
      strip_accents: as the tokenizer files state it; None = same as lowercase.
      assigned: {encoder weight path: checkpoint tensor name}.
      skipped_tensors: {checkpoint tensor name: why it is not used}.
      unassigned_weights: {encoder weight path: why it keeps its random init}.
    """

    config: BertConfig
    lowercase: bool
    strip_accents: bool | None
    assigned: dict
    skipped_tensors: dict
    unassigned_weights: dict

    def __str__(self):
        lines = [f"assigned {len(self.assigned)} encoder weights from the checkpoint; "
                 f"tokenizer lowercase={self.lowercase}, strip_accents={self.strip_accents}"]
        lines += [f"skipped tensor {name}: {why}" for name, why in self.skipped_tensors.items()]
        lines += [f"left at random init {path}: {why}"
                  for path, why in self.unassigned_weights.items()]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Assignment:
    """One encoder weight filled from one checkpoint tensor of `shape`; Linear
    weights are transposed, then every tensor is reshaped to the weight's shape."""

    variable: keras.Variable
    tensor: str
    shape: tuple
    transpose: bool = False


def _listing(items):
    items = sorted(items)
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _read_json(path):
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


def _check_files(directory):
    if not os.path.isdir(directory):
        raise ConversionError(f"{directory!r} is not a directory; expected a Hugging Face "
                              f"checkpoint directory with {CONFIG_FILE}, {WEIGHTS_FILE} and "
                              f"{VOCAB_FILE}.")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE)
               if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise ConversionError(
            f"{directory!r} lacks {', '.join(missing)}; a BERT checkpoint directory needs "
            f"{CONFIG_FILE}, {WEIGHTS_FILE} (PyTorch .bin files are not read: they are "
            f"pickles) and {VOCAB_FILE}.")


def bert_config_from_hf(hf_config, source=CONFIG_FILE):
    """A BertConfig from the dict of a Hugging Face BERT config.json.

    Raises:
      ConversionError: not a BERT config, a size is missing or invalid, or it
        asks for something BertEncoder does not implement.
    """
    model_type = hf_config.get("model_type")
    architectures = hf_config.get("architectures") or []
    is_bert = model_type == "bert" if model_type is not None else any(
        str(name).startswith("Bert") for name in architectures)
    if not is_bert:
        raise ConversionError(
            f"{source} describes model_type={model_type!r}, architectures={architectures}, "
            "not a BERT (model_type 'bert'); only BERT checkpoints can be converted.")
    missing = [key for key in _REQUIRED_SIZES if key not in hf_config]
    if missing:
        raise ConversionError(f"{source} lacks {', '.join(missing)}.")
    values = {**_DEFAULTS, **hf_config}
    for key in _REQUIRED_SIZES + ("max_position_embeddings", "type_vocab_size"):
        if not isinstance(values[key], int) or values[key] <= 0:
            raise ConversionError(f"{source}: {key} must be a positive integer, "
                                  f"got {values[key]!r}.")
    if values["hidden_size"] % values["num_attention_heads"]:
        raise ConversionError(
            f"{source}: hidden_size {values['hidden_size']} is not divisible by "
            f"num_attention_heads {values['num_attention_heads']}.")
    if values["hidden_act"] not in _ACTIVATIONS:
        raise ConversionError(
            f"{source}: hidden_act {values['hidden_act']!r} is not supported; supported: "
            f"{', '.join(sorted(_ACTIVATIONS))}.")
    if values.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"{source}: position_embedding_type {values['position_embedding_type']!r} is not "
            "supported; BertEncoder learns absolute position embeddings.")
    if values.get("is_decoder") or values.get("add_cross_attention"):
        raise ConversionError(f"{source}: decoder / cross-attention BERTs are not supported; "
                              "BertEncoder is a bidirectional encoder.")
    return BertConfig(
        num_layers=values["num_hidden_layers"],
        hidden_size=values["hidden_size"],
        num_heads=values["num_attention_heads"],
        intermediate_size=values["intermediate_size"],
        vocab_size=values["vocab_size"],
        max_sequence_length=values["max_position_embeddings"],
        type_vocab_size=values["type_vocab_size"],
        dropout=values["hidden_dropout_prob"],
        attention_dropout=values["attention_probs_dropout_prob"],
        activation=_ACTIVATIONS[values["hidden_act"]],
        layer_norm_epsilon=values["layer_norm_eps"],
        initializer_range=values["initializer_range"],
    )


def _tokenizer_settings(directory):
    """(lowercase, strip_accents) as tokenizer_config.json, else tokenizer.json,
    states them; unstated: lowercase True (uncased BERT), strip_accents None
    (= same as lowercase)."""
    stated = []  # (file, {setting: value or None}), most authoritative first
    tokenizer_config_path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
    if os.path.isfile(tokenizer_config_path):
        tokenizer_config = _read_json(tokenizer_config_path)
        stated.append((tokenizer_config_path, {
            "lowercase": tokenizer_config.get("do_lower_case"),
            "strip_accents": tokenizer_config.get("strip_accents"),
            "split_cjk": tokenizer_config.get("tokenize_chinese_chars")}))
    tokenizer_path = os.path.join(directory, TOKENIZER_FILE)
    if os.path.isfile(tokenizer_path):
        normalizer = _read_json(tokenizer_path).get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            stated.append((tokenizer_path, {
                "lowercase": normalizer.get("lowercase"),
                "strip_accents": normalizer.get("strip_accents"),
                "split_cjk": normalizer.get("handle_chinese_chars")}))

    def setting(key):
        return next(((path, values[key]) for path, values in stated
                     if values[key] is not None), (None, None))

    split_cjk_source, split_cjk = setting("split_cjk")
    if split_cjk is False:
        raise ConversionError(f"{split_cjk_source} turns off splitting CJK ideographs into "
                              "single characters; WordPieceTokenizer always splits them.")
    lowercase, strip_accents = setting("lowercase")[1], setting("strip_accents")[1]
    return (True if lowercase is None else bool(lowercase)), strip_accents


def _read_tensors(path):
    """{name: float32 or integer np.ndarray} of a .safetensors file."""
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


def _without_backbone_prefix(tensors, path):
    """{name without "bert.": (name in the file, tensor)}."""
    renamed = {}
    for name, value in tensors.items():
        key = name.removeprefix(_BACKBONE_PREFIX)
        if key in renamed:
            raise ConversionError(f"{path} has both {renamed[key][0]!r} and {name!r}.")
        renamed[key] = (name, value)
    return renamed


def _linear(dense, tensor_prefix, in_size, out_size):
    return [_Assignment(dense.kernel, tensor_prefix + ".weight", (out_size, in_size),
                        transpose=True),
            _Assignment(dense.bias, tensor_prefix + ".bias", (out_size,))]


def _layer_norm(norm, tensor_prefix, size):
    return [_Assignment(norm.gamma, tensor_prefix + ".weight", (size,)),
            _Assignment(norm.beta, tensor_prefix + ".bias", (size,))]


def _encoder_assignments(encoder):
    """Every encoder weight except the pooler's, with the tensor that fills it."""
    config = encoder.config
    hidden, ffn = config.hidden_size, config.intermediate_size
    embedding = encoder.embedding
    plan = [
        _Assignment(embedding.token_embedding.embeddings, "embeddings.word_embeddings.weight",
                    (config.vocab_size, hidden)),
        _Assignment(embedding.segment_embedding.embeddings,
                    "embeddings.token_type_embeddings.weight", (config.type_vocab_size, hidden)),
        _Assignment(embedding.position_embedding.embeddings,
                    "embeddings.position_embeddings.weight",
                    (config.max_sequence_length, hidden)),
        *_layer_norm(embedding.layer_norm, "embeddings.LayerNorm", hidden),
    ]
    for index, block in enumerate(encoder.blocks):
        layer = f"encoder.layer.{index}"
        attention = block.attention
        for name, dense in (("query", attention.query_dense), ("key", attention.key_dense),
                            ("value", attention.value_dense)):
            plan += _linear(dense, f"{layer}.attention.self.{name}", hidden, hidden)
        plan += _linear(attention.output_dense, f"{layer}.attention.output.dense", hidden, hidden)
        plan += _layer_norm(block.attention_norm, f"{layer}.attention.output.LayerNorm", hidden)
        plan += _linear(block.intermediate_dense, f"{layer}.intermediate.dense", hidden, ffn)
        plan += _linear(block.output_dense, f"{layer}.output.dense", ffn, hidden)
        plan += _layer_norm(block.output_norm, f"{layer}.output.LayerNorm", hidden)
    return plan


def _skipped_tensors(tensors):
    """{name in the file: why it is not used} for buffers and pretraining heads."""
    skipped = {}
    for key, (name, _) in tensors.items():
        if key in _SKIPPED_TENSORS:
            skipped[name] = _SKIPPED_TENSORS[key]
        elif key.startswith(_PRETRAINING_HEAD_PREFIX):
            skipped[name] = "pretraining head (masked-LM / next-sentence), not the encoder"
    return skipped


def _check_tensors(plan, tensors, skipped, path):
    """Raises one ConversionError listing every missing, unexpected, misshapen
    or non-float tensor, before any weight is touched."""
    planned = {a.tensor for a in plan}
    present = [a for a in plan if a.tensor in tensors]
    problems = {
        "missing tensors": sorted(planned - tensors.keys()),
        "unexpected tensors (not part of a BERT encoder)": [
            name for key, (name, _) in tensors.items()
            if key not in planned and name not in skipped],
        "tensors whose shape disagrees with config.json": [
            f"{tensors[a.tensor][0]} {tuple(tensors[a.tensor][1].shape)} (config.json implies "
            f"{a.shape})" for a in present if tuple(tensors[a.tensor][1].shape) != a.shape],
        "tensors that are not floating point": [
            f"{tensors[a.tensor][0]} ({tensors[a.tensor][1].dtype})" for a in present
            if not np.issubdtype(tensors[a.tensor][1].dtype, np.floating)],
    }
    found = [f"{kind}: {_listing(names)}" for kind, names in problems.items() if names]
    if found:
        raise ConversionError(f"{path} does not match its config.json: " + "; ".join(found))


def _assign_weights(encoder, tensors, path):
    """Copies `tensors` ({name without "bert.": (name in the file, array)}) into
    `encoder`. Returns (assigned, skipped_tensors, unassigned_weights) as in
    ConversionReport."""
    hidden = encoder.config.hidden_size
    plan = _encoder_assignments(encoder)
    pooler = _linear(encoder.pooler, "pooler.dense", hidden, hidden)
    unassigned = {}
    if any(a.tensor in tensors for a in pooler):
        plan += pooler
    else:
        unassigned = {a.variable.path: "the checkpoint has no pooler (pooler.dense); "
                      "sentence_embedding does not use it" for a in pooler}
    skipped = _skipped_tensors(tensors)
    _check_tensors(plan, tensors, skipped, path)

    assigned = {}
    for a in plan:
        name, value = tensors[a.tensor]
        a.variable.assign((value.T if a.transpose else value).reshape(a.variable.shape))
        assigned[a.variable.path] = name
    # Every weight is either assigned or reported; a weight added to BertEncoder
    # that nothing here fills must fail loudly rather than stay random unnoticed.
    forgotten = [v.path for v in encoder.weights
                 if v.path not in assigned and v.path not in unassigned]
    if forgotten:
        raise AssertionError(f"load_hf_bert does not know how to fill {_listing(forgotten)}.")
    return assigned, skipped, unassigned


def load_hf_bert(directory):
    """Builds a BertEncoder and WordPieceTokenizer from a Hugging Face BERT checkpoint.

    Args:
      directory: holds config.json, model.safetensors, vocab.txt and optionally
        tokenizer_config.json / tokenizer.json. Tensor names may carry a
        "bert." prefix (task models); "cls.*" pretraining heads and index
        buffers are skipped and reported.

    Returns:
      (encoder, tokenizer, report): the BertEncoder with every weight assigned
      (the pooler stays at its random init, and the report says so, when the
      checkpoint has none), the tokenizer for vocab.txt with the checkpoint's
      casing, and a ConversionReport.

    Raises:
      ConversionError: a required file is missing, config.json is not a
        supported BERT, tensors are missing, unexpected or of the wrong shape,
        or vocab.txt's size differs from the word-embedding rows.
    """
    directory = os.fspath(directory)
    _check_files(directory)
    config_path = os.path.join(directory, CONFIG_FILE)
    config = bert_config_from_hf(_read_json(config_path), source=config_path)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    tensors = _without_backbone_prefix(_read_tensors(weights_path), weights_path)
    encoder = BertEncoder(config).build_for_inputs()
    assigned, skipped, unassigned = _assign_weights(encoder, tensors, weights_path)

    vocab_path = os.path.join(directory, VOCAB_FILE)
    try:
        vocab = load_vocab(vocab_path)
    except VocabError as error:
        raise ConversionError(str(error)) from error
    if len(vocab) != config.vocab_size:
        raise ConversionError(
            f"{vocab_path} has {len(vocab)} tokens but the word embeddings have "
            f"{config.vocab_size} rows; they must come from the same vocabulary.")
    lowercase, strip_accents = _tokenizer_settings(directory)
    tokenizer = WordPieceTokenizer(vocab, lowercase=lowercase, strip_accents=strip_accents)
    report = ConversionReport(
        config=config, lowercase=tokenizer.lowercase, strip_accents=strip_accents,
        assigned=assigned, skipped_tensors=skipped, unassigned_weights=unassigned)
    return encoder, tokenizer, report
