"""Pretrained SentencePiece models from the sentencepiece==0.2.3 source archive on PyPI.

The archive's test folder ships three small models trained by the SentencePiece
authors, which check a SentencePiece implementation against models it did not
train: "botchan_en_bpe_1000" (BPE, nmt_nfkc normalization) and
"botchan_en_unigram_1000" (unigram, nfkc), 1,000 pieces each from the English
novel Botchan, and "kyoto_ja_unigram_8000" (unigram, nfkc, 8,000 pieces of
Japanese). All three use <unk> 0, <s> 1, </s> 2, no pad piece and no byte
fallback. botchan.txt, the English training text, sits beside them.
"""
import os

from kerasllm.datasets.pypi_files import PackageFiles, fetch_package_files
from kerasllm.errors import DataError

MODEL_NAMES = ("botchan_en_bpe_1000", "botchan_en_unigram_1000", "kyoto_ja_unigram_8000")
ARCHIVE = PackageFiles(
    requirement="sentencepiece==0.2.3",
    filename="sentencepiece-0.2.3.tar.gz",
    sha256="21618ad31f0453a1ebf5ec58defed99758d54af0b670546ecac639ddd8b86fbd",
    archive_folder="sentencepiece-0.2.3/test",
    cache_folder="sentencepiece-0.2.3/test",
    required_files=tuple(f"{name}.model" for name in MODEL_NAMES) + ("botchan.txt",),
)


def sentencepiece_test_folder(cache_dir=None):
    """The cached test folder (the .model files and botchan.txt), downloading the
    3.8 MB archive with pip on first use.

    Raises:
      kerasllm.datasets.pypi_files.PackageFetchError: pip cannot fetch the archive
        or its checksum is wrong.
    """
    return fetch_package_files(ARCHIVE, cache_dir)


def sentencepiece_test_model_file(name, cache_dir=None):
    """Path of the `<name>.model` file, `name` one of MODEL_NAMES."""
    if name not in MODEL_NAMES:
        raise DataError(f"unknown model {name!r}; the archive has {', '.join(MODEL_NAMES)}")
    return os.path.join(sentencepiece_test_folder(cache_dir), f"{name}.model")
