"""Reads a Hugging Face GPT-2 or Llama checkpoint directory into a GptCausalLM, and
writes a GptCausalLM's weights and config.json in that layout (hf_export writes
the whole directory).

The directory is the one `save_pretrained` writes: `config.json` (sizes;
model_type "gpt2" or "llama") and `model.safetensors` (weights; read with the
safetensors NumPy API, so no pickled code is ever run). Tokenizer files are not
read here.

Layout differences the conversion bridges:
  GPT-2 ("transformer." prefix of GPT2LMHeadModel optional):
  * Its projections are Conv1D layers whose weight is stored [in, out], the
    layout of a Keras kernel: no transpose.
  * The query, key and value projections are one fused "c_attn" ([hidden,
    3 * hidden] weight, [3 * hidden] bias): columns 0..hidden-1 are the query,
    then the key, then the value. Each third becomes one of our projections,
    reported as e.g. "h.0.attn.c_attn.weight[:, 0:768]".
  * "wpe" is the learned position table, "ln_1"/"ln_2"/"ln_f" the LayerNorms
    (weight/bias = gamma/beta); the output projection is tied to "wte" (a
    "lm_head.weight" equal to it is skipped). The per-layer "attn.bias" and
    "attn.masked_bias" are causal-mask buffers, not weights.
  * "gelu_new" (also "gelu_pytorch_tanh") is GELU's tanh approximation, the
    activation of our FeedForward.
  Llama ("model." prefix of LlamaForCausalLM optional):
  * Linear weights are [out, in] and transposed; q/k/v_proj, o_proj, gate/up/
    down_proj have no biases; input_layernorm and post_attention_layernorm and
    the final "norm" are RMSNorm scales.
  * Query and key rows are already in the "rotate half" order of our
    RotaryEmbedding (features p and p + head_size/2 rotate together).
  * The output projection is "lm_head.weight" unless tie_word_embeddings.
  Both: our attention projections keep the heads as separate axes (kernels
  [hidden, heads, head_size], output [heads, head_size, hidden]); the
  checkpoints' flat axis is heads-major, so a row-major reshape splits it.
"""
import os

import numpy as np

from kerasllm.convert.checkpoint_mapping import (Assignment, ConversionReport, apply_plan,
                                                 check_plan, layer_norm, planned_tensors,
                                                 read_json, read_safetensors, without_prefix)
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_model_type import CONFIG_FILE, check_model_type
from kerasllm.convert.llama_weights import HF_NAMES, llama_plan
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.gpt.config import GptConfig

WEIGHTS_FILE = "model.safetensors"
MODEL_TYPES = ("gpt2", "llama")
_PREFIXES = {"gpt2": "transformer.", "llama": "model."}
_TIED_HEAD = "lm_head.weight"

_GPT2_REQUIRED = ("n_layer", "n_embd", "n_head", "vocab_size")
_GPT2_DEFAULTS = {"n_positions": 1024, "n_inner": None, "activation_function": "gelu_new",
                  "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1, "attn_pdrop": 0.1,
                  "initializer_range": 0.02, "tie_word_embeddings": True,
                  "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}
# Both names are GELU's tanh approximation, the only activation FeedForward runs.
_GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")

_LLAMA_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                   "intermediate_size", "vocab_size")
# Hugging Face's LlamaConfig defaults.
_LLAMA_DEFAULTS = {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
                   "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
                   "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
                   "attention_dropout": 0.0, "initializer_range": 0.02}


def _check_files(directory):
    if not os.path.isdir(directory):
        raise ConversionError(f"{directory!r} is not a directory; expected a Hugging Face "
                              f"checkpoint directory with {CONFIG_FILE} and {WEIGHTS_FILE}.")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE)
               if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise ConversionError(
            f"{directory!r} lacks {', '.join(missing)}; a GPT checkpoint directory needs "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} (PyTorch .bin files are not read: they are "
            "pickles).")


def _positive_ints(values, keys, source):
    for key in keys:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConversionError(f"{source}: {key} must be a positive integer, got {value!r}.")


def _positive_number(values, key, source):
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConversionError(f"{source}: {key} must be a positive number, got {value!r}.")
    return float(value)


def _with_defaults(hf_config, required, defaults, source):
    missing = [key for key in required if key not in hf_config]
    if missing:
        raise ConversionError(f"{source} lacks {', '.join(missing)}.")
    # An explicit null takes the default, as in Hugging Face's configs.
    return {**defaults, **{k: v for k, v in hf_config.items() if v is not None}}


def _gpt2_config(hf_config, source):
    values = _with_defaults(hf_config, _GPT2_REQUIRED, _GPT2_DEFAULTS, source)
    if values["n_inner"] is None:
        values["n_inner"] = 4 * values["n_embd"]
    _positive_ints(values, _GPT2_REQUIRED + ("n_positions", "n_inner"), source)
    if values["activation_function"] not in _GPT2_ACTIVATIONS:
        raise ConversionError(
            f"{source}: activation_function {values['activation_function']!r} is not "
            f"supported; supported: {', '.join(_GPT2_ACTIVATIONS)} (GELU's tanh form).")
    if not values["scale_attn_weights"] or values["scale_attn_by_inverse_layer_idx"]:
        raise ConversionError(f"{source}: attention scaled other than by 1/sqrt(head size) "
                              "(scale_attn_weights / scale_attn_by_inverse_layer_idx) is "
                              "not supported.")
    if values.get("add_cross_attention"):
        raise ConversionError(f"{source}: cross-attention is not supported; GptDecoder is "
                              "decoder-only.")
    return dict(
        num_layers=values["n_layer"], hidden_size=values["n_embd"], num_heads=values["n_head"],
        intermediate_size=values["n_inner"], vocab_size=values["vocab_size"],
        max_sequence_length=values["n_positions"],
        norm_epsilon=_positive_number(values, "layer_norm_epsilon", source),
        tie_embeddings=bool(values["tie_word_embeddings"]), dropout=values["resid_pdrop"],
        attention_dropout=values["attn_pdrop"],
        initializer_range=values["initializer_range"])


def _llama_rope_theta(values, source):
    """rope_theta, from the top level or (newer configs) rope_parameters; any
    rope scaling is refused."""
    parameters = values.get("rope_parameters")
    if isinstance(parameters, dict):
        if parameters.get("rope_type", "default") != "default":
            raise ConversionError(f"{source}: rope_parameters {parameters} ask for rope "
                                  "scaling, which RotaryEmbedding does not implement.")
        values = {**values, **{k: v for k, v in parameters.items() if k == "rope_theta"}}
    scaling = values["rope_scaling"]
    if scaling and scaling.get("rope_type", scaling.get("type")) != "default":
        raise ConversionError(f"{source}: rope_scaling {scaling} is not supported; "
                              "RotaryEmbedding has no position scaling.")
    return _positive_number(values, "rope_theta", source)


def _llama_config(hf_config, source):
    values = _with_defaults(hf_config, _LLAMA_REQUIRED, _LLAMA_DEFAULTS, source)
    values.setdefault("num_key_value_heads", values["num_attention_heads"])
    _positive_ints(values, _LLAMA_REQUIRED + ("num_key_value_heads",
                                              "max_position_embeddings"), source)
    if values["hidden_act"] != "silu":
        raise ConversionError(f"{source}: hidden_act {values['hidden_act']!r} is not "
                              "supported; the gated feed-forward runs SiLU (SwiGLU).")
    if values["attention_bias"] or values["mlp_bias"]:
        raise ConversionError(f"{source}: attention_bias / mlp_bias are not supported; "
                              "Llama-style GptDecoder layers have no biases.")
    heads, hidden = values["num_attention_heads"], values["hidden_size"]
    if hidden % heads:
        raise ConversionError(f"{source}: hidden_size {hidden} is not divisible by "
                              f"num_attention_heads {heads}.")
    if (hidden // heads) % 2:
        raise ConversionError(f"{source}: the head size {hidden // heads} is odd; rotary "
                              "positions rotate pairs of features.")
    head_dim = values.get("head_dim")
    if head_dim is not None and head_dim != hidden // heads:
        raise ConversionError(f"{source}: head_dim {head_dim} differs from hidden_size / "
                              f"num_attention_heads = {hidden // heads}; not supported.")
    return dict(
        num_layers=values["num_hidden_layers"], hidden_size=hidden, num_heads=heads,
        num_key_value_heads=values["num_key_value_heads"],
        intermediate_size=values["intermediate_size"], vocab_size=values["vocab_size"],
        max_sequence_length=values["max_position_embeddings"], position_embedding="rotary",
        rope_theta=_llama_rope_theta(values, source), norm="rms_norm",
        norm_epsilon=_positive_number(values, "rms_norm_eps", source), feed_forward="swiglu",
        use_bias=False, tie_embeddings=bool(values["tie_word_embeddings"]), dropout=0.0,
        attention_dropout=values["attention_dropout"],
        initializer_range=values["initializer_range"])


def gpt_config_from_hf(hf_config, source=CONFIG_FILE):
    """A GptConfig from the dict of a Hugging Face GPT-2 or Llama config.json.

    Raises:
      ConversionError: model_type is not "gpt2" or "llama", a size is missing or
        invalid, or the config asks for something GptDecoder does not implement.
    """
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ConversionError(
            f"{source} describes model_type={model_type!r} (architectures "
            f"{hf_config.get('architectures')}); only {', '.join(MODEL_TYPES)} checkpoints "
            "can be converted to a GptCausalLM.")
    settings = (_gpt2_config if model_type == "gpt2" else _llama_config)(hf_config, source)
    try:
        return GptConfig(**settings)
    except ValueError as error:  # e.g. num_heads not a multiple of num_key_value_heads
        raise ConversionError(f"{source}: {error}.") from error


def _dense(dense, tensor, in_size, out_size, transpose, bias=True):
    """A Dense-like layer's kernel (and bias) from a [in, out] (Conv1D) or
    [out, in] (Linear, transpose=True) weight."""
    shape = (out_size, in_size) if transpose else (in_size, out_size)
    plan = [Assignment(dense.kernel, tensor + ".weight", shape, transpose=transpose)]
    if bias:
        plan.append(Assignment(dense.bias, tensor + ".bias", (out_size,)))
    return plan


def _column_key(key, start, stop, matrix):
    return f"{key}[:, {start}:{stop}]" if matrix else f"{key}[{start}:{stop}]"


def _gpt2_assignments(model):
    backbone = model.backbone
    config = backbone.config
    hidden, ffn = config.hidden_size, config.intermediate_size
    plan = [
        Assignment(backbone.token_embedding.embeddings, "wte.weight",
                   (config.vocab_size, hidden)),
        Assignment(backbone.position_embedding.embeddings, "wpe.weight",
                   (config.max_sequence_length, hidden)),
    ]
    for i, block in enumerate(backbone.blocks):
        attention = block.self_attention
        plan += layer_norm(block.self_attention_norm, f"h.{i}.ln_1", hidden)
        fused = f"h.{i}.attn.c_attn"
        for part, dense in enumerate((attention.query_dense, attention.key_dense,
                                      attention.value_dense)):
            start, stop = part * hidden, (part + 1) * hidden
            plan += [Assignment(dense.kernel, _column_key(fused + ".weight", start, stop, True),
                                (hidden, hidden)),
                     Assignment(dense.bias, _column_key(fused + ".bias", start, stop, False),
                                (hidden,))]
        plan += _dense(attention.output_dense, f"h.{i}.attn.c_proj", hidden, hidden, False)
        plan += layer_norm(block.feed_forward_norm, f"h.{i}.ln_2", hidden)
        plan += _dense(block.feed_forward.intermediate_dense, f"h.{i}.mlp.c_fc", hidden, ffn,
                       False)
        plan += _dense(block.feed_forward.output_dense, f"h.{i}.mlp.c_proj", ffn, hidden,
                       False)
    plan += layer_norm(backbone.final_norm, "ln_f", hidden)
    return plan


def _split_fused_qkv(tensors, config, path):
    """Replaces each present c_attn weight [hidden, 3 hidden] and bias [3 hidden]
    by its query, key and value thirds (keys as in _gpt2_assignments)."""
    hidden = config.hidden_size
    misshapen = []
    for i in range(config.num_layers):
        for kind, shape in (("weight", (hidden, 3 * hidden)), ("bias", (3 * hidden,))):
            key = f"h.{i}.attn.c_attn.{kind}"
            if key not in tensors:
                continue  # check_plan reports its thirds as missing
            name, value = tensors.pop(key)
            if value.shape != shape:
                misshapen.append(f"{name} {value.shape} ({CONFIG_FILE} implies {shape})")
                continue
            for part in range(3):
                start, stop = part * hidden, (part + 1) * hidden
                matrix = kind == "weight"
                tensors[_column_key(key, start, stop, matrix)] = (
                    _column_key(name, start, stop, matrix),
                    value[:, start:stop] if matrix else value[start:stop])
    if misshapen:
        raise ConversionError(f"{path} does not match its {CONFIG_FILE}: tensors whose shape "
                              f"disagrees with {CONFIG_FILE}: {', '.join(misshapen)}")


def _llama_assignments(model):
    return llama_plan(model, HF_NAMES)


def _skipped_tensors(tensors, model_type, config, embedding_key, path):
    """{name in the file: why it is not used}: buffers, and a tied head's copy."""
    skipped = {}
    for key, (name, _) in tensors.items():
        if model_type == "gpt2" and key.startswith("h.") and key.endswith(
                (".attn.bias", ".attn.masked_bias")):
            skipped[name] = "causal-mask buffer, not a weight"
        elif key.endswith(".self_attn.rotary_emb.inv_freq"):
            skipped[name] = "rotary frequency buffer, recomputed from rope_theta"
    if config.tie_embeddings and _TIED_HEAD in tensors:
        name, head = tensors[_TIED_HEAD]
        embedding = tensors.get(embedding_key, (None, None))[1]
        if embedding is not None and not np.array_equal(head, embedding):
            raise ConversionError(
                f"{path}: {CONFIG_FILE} ties the output projection to the token embedding "
                f"but {name} differs from {tensors[embedding_key][0]}.")
        skipped[name] = f"tied output projection, a copy of {embedding_key}"
    return skipped


def load_hf_gpt(directory):
    """Builds a GptCausalLM from a Hugging Face GPT-2 or Llama checkpoint directory.

    Args:
      directory: holds config.json (model_type "gpt2" or "llama") and
        model.safetensors. Tensor names may carry the task model's prefix
        ("transformer." / "model."); buffers and a tied head's copy are skipped
        and reported.

    Returns:
      (model, report): the GptCausalLM with every weight assigned, and a
      ConversionReport whose config is the model's GptConfig. Tokenizer files
      are not read (report.tokenizer says so).

    Raises:
      ConversionError: config.json names another model (see
        hf_model_type.check_model_type), a file is missing, config.json is not a
        supported GPT-2 or Llama, or tensors are missing, unexpected, of the wrong
        shape or not floating point.
    """
    directory = os.fspath(directory)
    check_model_type(directory, "load_hf_gpt")
    _check_files(directory)
    config_path = os.path.join(directory, CONFIG_FILE)
    hf_config = read_json(config_path)
    config = gpt_config_from_hf(hf_config, source=config_path)
    model_type = hf_config["model_type"]
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    tensors = without_prefix(read_safetensors(weights_path), _PREFIXES[model_type],
                             weights_path)
    return gpt_from_tensors(config, model_type, tensors, weights_path)


def gpt_from_tensors(config, model_type, tensors, path):
    """(GptCausalLM, ConversionReport) of GptConfig `config` filled from `tensors`
    ({Hugging Face name without the task prefix: (name in the file, array)}) of a
    "gpt2" or "llama" checkpoint at `path` (for messages); see load_hf_gpt."""
    model = GptCausalLM(GptDecoder(config)).build_for_inputs()
    if model_type == "gpt2":
        _split_fused_qkv(tensors, config, path)
        plan, embedding_key = _gpt2_assignments(model), "wte.weight"
    else:
        plan, embedding_key = _llama_assignments(model), "embed_tokens.weight"
    if model.lm_head is not None:
        plan += _dense(model.lm_head, "lm_head", config.hidden_size, config.vocab_size, True,
                       bias=False)
    skipped = _skipped_tensors(tensors, model_type, config, embedding_key, path)
    check_plan(plan, tensors, skipped, path, f"{model_type} causal LM")
    assigned = apply_plan(plan, tensors, model, {})
    report = ConversionReport(
        config=config, tokenizer={"kind": "not loaded (tokenizer files are not read)"},
        assigned=assigned, skipped_tensors=skipped, unassigned_weights={})
    return model, report


# --- writing ---------------------------------------------------------------------------

def _config_mismatch(config, wanted):
    """The settings of `config` that differ from `wanted` ({field: value}), as text."""
    return ", ".join(f"{field}={getattr(config, field)!r} (needs {value!r})"
                     for field, value in wanted.items() if getattr(config, field) != value)


def gpt_style(config):
    """"gpt2" or "llama": the Hugging Face architecture that holds `config` exactly.

    Raises:
      ConversionError: a mix of the two styles (e.g. rotary positions with
        LayerNorm), which no Hugging Face architecture kerasllm reads holds.
    """
    styles = {
        "gpt2": {"position_embedding": "learned", "norm": "layer_norm",
                 "feed_forward": "gelu_mlp", "use_bias": True,
                 "num_key_value_heads": config.num_heads},
        "llama": {"position_embedding": "rotary", "norm": "rms_norm",
                  "feed_forward": "swiglu", "use_bias": False},
    }
    for model_type, wanted in styles.items():
        if not _config_mismatch(config, wanted):
            return model_type
    raise ConversionError(
        "this GPT is neither GPT-2 style nor Llama style, so no Hugging Face architecture "
        f"holds it: as GPT-2 {_config_mismatch(config, styles['gpt2'])}; as Llama "
        f"{_config_mismatch(config, styles['llama'])}")


def hf_config_of(config, special_ids=None):
    """The config.json dict of a Hugging Face GPT2LMHeadModel or LlamaForCausalLM
    holding a model of GptConfig `config` (gpt_config_from_hf reads it back to an
    equal GptConfig); `special_ids` ({"bos_token_id": ..., ...}) are added.

    Raises:
      ConversionError: see gpt_style.
    """
    model_type = gpt_style(config)
    if model_type == "gpt2":
        values = {
            "architectures": ["GPT2LMHeadModel"], "n_layer": config.num_layers,
            "n_embd": config.hidden_size, "n_head": config.num_heads,
            "n_inner": config.intermediate_size, "n_positions": config.max_sequence_length,
            "n_ctx": config.max_sequence_length, "activation_function": "gelu_new",
            "layer_norm_epsilon": config.norm_epsilon, "resid_pdrop": config.dropout,
            "embd_pdrop": config.dropout, "attn_pdrop": config.attention_dropout}
    else:
        values = {
            "architectures": ["LlamaForCausalLM"], "num_hidden_layers": config.num_layers,
            "hidden_size": config.hidden_size, "num_attention_heads": config.num_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "head_dim": config.head_size, "intermediate_size": config.intermediate_size,
            "max_position_embeddings": config.max_sequence_length,
            "rms_norm_eps": config.norm_epsilon, "rope_theta": config.rope_theta,
            "rope_scaling": None, "hidden_act": "silu", "attention_bias": False,
            "mlp_bias": False, "attention_dropout": config.attention_dropout}
    return {"model_type": model_type, **values, "vocab_size": config.vocab_size,
            "tie_word_embeddings": config.tie_embeddings,
            "initializer_range": config.initializer_range, "torch_dtype": "float32",
            **(special_ids or {})}


def _fuse_qkv(tensors, config):
    """Joins each layer's query, key and value thirds (as _gpt2_assignments names them)
    into GPT-2's c_attn weight [hidden, 3 hidden] and bias [3 hidden]."""
    hidden = config.hidden_size
    for i in range(config.num_layers):
        key = f"h.{i}.attn.c_attn"
        thirds = [(_column_key(key + ".weight", p * hidden, (p + 1) * hidden, True),
                   _column_key(key + ".bias", p * hidden, (p + 1) * hidden, False))
                  for p in range(3)]
        tensors[key + ".weight"] = np.concatenate([tensors.pop(w) for w, _ in thirds], axis=1)
        tensors[key + ".bias"] = np.concatenate([tensors.pop(b) for _, b in thirds])


def hf_gpt_tensors(model):
    """{tensor name in a Hugging Face model.safetensors: float32 array} of `model`, a
    GptCausalLM of GPT-2 or Llama style, named as GPT2LMHeadModel / LlamaForCausalLM
    name them (the output projection only when untied)."""
    config = model.backbone.config
    model_type = gpt_style(config)
    plan = _gpt2_assignments(model) if model_type == "gpt2" else _llama_assignments(model)
    tensors = planned_tensors(plan)
    if model_type == "gpt2":
        _fuse_qkv(tensors, config)
    tensors = {_PREFIXES[model_type] + name: value for name, value in tensors.items()}
    if model.lm_head is not None:
        tensors.update(planned_tensors(_dense(model.lm_head, "lm_head", config.hidden_size,
                                              config.vocab_size, True, bias=False)))
    return tensors
