"""Reads a Hugging Face BERT checkpoint directory into a BertEncoder and tokenizer (and
a BertForSequenceClassification's head into a BertClassifier), and writes a BERT's
weights and config.json in that layout (hf_export writes the whole directory).

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
import os

from kerasllm.convert.checkpoint_mapping import (Assignment, ConversionReport, apply_plan,
                                                 check_plan, layer_norm, linear,
                                                 planned_tensors, read_json,
                                                 read_safetensors, without_prefix)
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_model_type import CONFIG_FILE, check_model_type, model_type_of
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.config import BertConfig
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.tokenizers.wordpiece_vocab import VocabError, load_vocab

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
# BertForSequenceClassification's head, read by classifier_from_hf.
_CLASSIFIER_HEAD = "classifier"
_CLASSIFIER_ARCHITECTURE = "BertForSequenceClassification"
# Hugging Face's "gelu" is the exact erf form, as is Keras's "gelu".
_ACTIVATIONS = {"gelu": "gelu"}
_REQUIRED_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                   "intermediate_size", "vocab_size")
# Values the BERT paper (and Hugging Face's BertConfig) use when a key is absent.
_DEFAULTS = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
             "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}


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
    if model_type_of(hf_config) != "bert":
        raise ConversionError(
            f"{source} describes model_type={hf_config.get('model_type')!r}, architectures="
            f"{hf_config.get('architectures') or []}, not a BERT (model_type 'bert'); only "
            "BERT checkpoints can be converted.")
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
        tokenizer_config = read_json(tokenizer_config_path)
        stated.append((tokenizer_config_path, {
            "lowercase": tokenizer_config.get("do_lower_case"),
            "strip_accents": tokenizer_config.get("strip_accents"),
            "split_cjk": tokenizer_config.get("tokenize_chinese_chars")}))
    tokenizer_path = os.path.join(directory, TOKENIZER_FILE)
    if os.path.isfile(tokenizer_path):
        normalizer = read_json(tokenizer_path).get("normalizer") or {}
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


def _encoder_assignments(encoder):
    """Every encoder weight except the pooler's, with the tensor that fills it."""
    config = encoder.config
    hidden, ffn = config.hidden_size, config.intermediate_size
    embedding = encoder.embedding
    plan = [
        Assignment(embedding.token_embedding.embeddings, "embeddings.word_embeddings.weight",
                   (config.vocab_size, hidden)),
        Assignment(embedding.segment_embedding.embeddings,
                   "embeddings.token_type_embeddings.weight", (config.type_vocab_size, hidden)),
        Assignment(embedding.position_embedding.embeddings,
                   "embeddings.position_embeddings.weight",
                   (config.max_sequence_length, hidden)),
        *layer_norm(embedding.layer_norm, "embeddings.LayerNorm", hidden),
    ]
    for index, block in enumerate(encoder.blocks):
        layer = f"encoder.layer.{index}"
        attention = block.attention
        for name, dense in (("query", attention.query_dense), ("key", attention.key_dense),
                            ("value", attention.value_dense)):
            plan += linear(dense, f"{layer}.attention.self.{name}", hidden, hidden)
        plan += linear(attention.output_dense, f"{layer}.attention.output.dense", hidden, hidden)
        plan += layer_norm(block.attention_norm, f"{layer}.attention.output.LayerNorm", hidden)
        plan += linear(block.intermediate_dense, f"{layer}.intermediate.dense", hidden, ffn)
        plan += linear(block.output_dense, f"{layer}.output.dense", ffn, hidden)
        plan += layer_norm(block.output_norm, f"{layer}.output.LayerNorm", hidden)
    return plan


def _skipped_tensors(tensors):
    """{name in the file: why it is not used} for buffers and pretraining heads."""
    skipped = {}
    for key, (name, _) in tensors.items():
        if key in _SKIPPED_TENSORS:
            skipped[name] = _SKIPPED_TENSORS[key]
        elif key.startswith(_PRETRAINING_HEAD_PREFIX):
            skipped[name] = "pretraining head (masked-LM / next-sentence), not the encoder"
        elif key.startswith(_CLASSIFIER_HEAD + "."):
            skipped[name] = ("sequence-classification head, not the encoder (read by "
                             "BertClassifier.from_preset)")
    return skipped


def _assign_weights(encoder, tensors, path):
    """Copies `tensors` ({name without "bert.": (name in the file, array)}) into
    `encoder`. Returns (assigned, skipped_tensors, unassigned_weights) as in
    ConversionReport."""
    hidden = encoder.config.hidden_size
    plan = _encoder_assignments(encoder)
    pooler = linear(encoder.pooler, "pooler.dense", hidden, hidden)
    unassigned = {}
    if any(a.tensor in tensors for a in pooler):
        plan += pooler
    else:
        unassigned = {a.variable.path: "the checkpoint has no pooler (pooler.dense); "
                      "sentence_embedding does not use it" for a in pooler}
    skipped = _skipped_tensors(tensors)
    check_plan(plan, tensors, skipped, path, "BERT encoder")
    assigned = apply_plan(plan, tensors, encoder, unassigned)
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
      ConversionError: config.json names another model (see
        hf_model_type.check_model_type), a required file is missing, config.json
        is not a supported BERT, tensors are missing, unexpected or of the wrong
        shape, or vocab.txt's size differs from the word-embedding rows.
    """
    directory = os.fspath(directory)
    check_model_type(directory, "load_hf_bert")
    _check_files(directory)
    config_path = os.path.join(directory, CONFIG_FILE)
    config = bert_config_from_hf(read_json(config_path), source=config_path)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    tensors = without_prefix(read_safetensors(weights_path), _BACKBONE_PREFIX, weights_path)
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
        config=config, tokenizer=tokenizer.settings(), assigned=assigned,
        skipped_tensors=skipped, unassigned_weights=unassigned)
    return encoder, tokenizer, report


def classifier_from_hf(directory, encoder, tokenizer):
    """The BertClassifier a BertForSequenceClassification directory holds (its head
    and label names, [CLS] pooling as Hugging Face classifies), around `encoder` as
    load_hf_bert read it; None for a directory of another BERT architecture."""
    from kerasllm.models.bert.classifier import BertClassifier  # models import convert
    directory = os.fspath(directory)
    hf_config = read_json(os.path.join(directory, CONFIG_FILE))
    if _CLASSIFIER_ARCHITECTURE not in (hf_config.get("architectures") or []):
        return None
    labels = hf_config.get("id2label") or {}
    try:
        names = [labels[str(i)] for i in range(len(labels))]
    except KeyError:
        raise ConversionError(f"{directory}/{CONFIG_FILE}: id2label keys are not 0 .. "
                              f"{len(labels) - 1}") from None
    task = BertClassifier(encoder, num_classes=len(names), label_names=names, pooling="cls",
                          dropout=hf_config.get("classifier_dropout") or encoder.config.dropout,
                          tokenizer=tokenizer)
    task.build_for_inputs()
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    tensors = without_prefix(read_safetensors(weights_path), _BACKBONE_PREFIX, weights_path)
    plan = linear(task.classifier, _CLASSIFIER_HEAD, encoder.config.hidden_size, len(names))
    tensors = {key: value for key, value in tensors.items()
               if key.startswith(_CLASSIFIER_HEAD + ".")}
    check_plan(plan, tensors, {}, weights_path, "sequence-classification head")
    apply_plan(plan, tensors, task.classifier, {})
    return task


# --- writing ---------------------------------------------------------------------------

def hf_bert_config_of(config, classifier=None):
    """The config.json dict of a Hugging Face BertModel (or, for a BertClassifier,
    BertForSequenceClassification) of BertConfig `config`.

    Raises:
      ConversionError: a pre-LN encoder (norm_first) or another activation than GELU:
        Hugging Face's BERT is post-LN with GELU.
    """
    if config.norm_first or config.activation != "gelu":
        raise ConversionError(
            f"this BERT (norm_first={config.norm_first}, activation={config.activation!r}) "
            "is not one Hugging Face's BertModel holds: it is post-LN with GELU")
    values = {
        "model_type": "bert", "architectures": ["BertModel"],
        "hidden_size": config.hidden_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "intermediate_size": config.intermediate_size,
        "hidden_act": "gelu", "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_sequence_length,
        "type_vocab_size": config.type_vocab_size, "vocab_size": config.vocab_size,
        "layer_norm_eps": config.layer_norm_epsilon,
        "initializer_range": config.initializer_range,
        "position_embedding_type": "absolute", "pad_token_id": 0, "torch_dtype": "float32"}
    if classifier is not None:
        if classifier.pooling != "cls":
            raise ConversionError(
                f"this classifier pools by {classifier.pooling!r}; Hugging Face's "
                "BertForSequenceClassification classifies the [CLS] pooler's output, so "
                "only pooling='cls' classifiers can be written (or write its backbone)")
        names = classifier.label_names
        values.update(architectures=[_CLASSIFIER_ARCHITECTURE],
                      id2label={str(i): name for i, name in enumerate(names)},
                      label2id={name: i for i, name in enumerate(names)},
                      classifier_dropout=classifier.dropout_rate,
                      problem_type="single_label_classification")
    return values


def hf_bert_tensors(encoder, classifier=None):
    """{tensor name: float32 array} of a BertEncoder as BertModel names them, or with
    `classifier` (a BertClassifier around it) as BertForSequenceClassification does."""
    hidden = encoder.config.hidden_size
    tensors = planned_tensors(_encoder_assignments(encoder)
                              + linear(encoder.pooler, "pooler.dense", hidden, hidden))
    if classifier is None:
        return tensors
    tensors = {_BACKBONE_PREFIX + name: value for name, value in tensors.items()}
    tensors.update(planned_tensors(linear(classifier.classifier, _CLASSIFIER_HEAD, hidden,
                                          classifier.num_classes)))
    return tensors
