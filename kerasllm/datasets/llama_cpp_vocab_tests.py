"""Reference tokenizations from llama.cpp's tokenizer tests, fetched from PyPI.

The llama-cpp-python==0.3.36 source archive (77 MB) vendors llama.cpp, whose
`models/` folder holds, per tokenizer NAME, a vocabulary-only GGUF file
`ggml-vocab-NAME.gguf` and two test files: `.gguf.inp`, 46 texts, each followed
by "\\n__ggml_vocab_test__\\n", and `.gguf.out`, one line of token ids per text, as
the Hugging Face tokenizer of that model gave them. They test a tokenizer against
ids it did not produce itself.
"""
import os

from kerasllm.datasets.pypi_files import PackageFiles, fetch_package_files
from kerasllm.errors import DataError

_SEPARATOR = "\n__ggml_vocab_test__\n"
# The byte-level BPE tokenizers among them.
NAMES = ("gpt-2", "starcoder", "refact")
LLAMA_CPP_MODELS = PackageFiles(
    requirement="llama-cpp-python==0.3.36",
    filename="llama_cpp_python-0.3.36.tar.gz",
    sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    archive_folder="llama_cpp_python-0.3.36/vendor/llama.cpp/models",
    cache_folder="llama-cpp-python-0.3.36/models",
    required_files=tuple(f"ggml-vocab-{name}.gguf{suffix}" for name in NAMES
                         for suffix in ("", ".inp", ".out")),
)


def vocab_test_files(name, cache_dir=None):
    """(GGUF path, .inp path, .out path) of llama.cpp's test tokenizer `name`,
    fetching the source archive on first use.

    Raises:
      PackageFetchError: pip cannot fetch the archive or its checksum is wrong.
    """
    folder = fetch_package_files(LLAMA_CPP_MODELS, cache_dir)
    path = os.path.join(folder, f"ggml-vocab-{name}.gguf")
    return path, path + ".inp", path + ".out"


def read_vocab_tests(inp_path, out_path):
    """(texts, ids): the test texts of an .inp file and the token id lists of its
    .out file, in order.

    Raises:
      DataError: the files do not hold one id line per text.
    """
    with open(inp_path, encoding="utf-8", newline="") as f:
        texts = f.read().split(_SEPARATOR)
    with open(out_path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    # Both files end with their separator, leaving an empty last part.
    if texts[-1] or lines[-1] or len(texts) != len(lines):
        raise DataError(f"{inp_path} and {out_path} do not hold one line of ids per text.")
    return texts[:-1], [[int(token_id) for token_id in line.split()] for line in lines[:-1]]
