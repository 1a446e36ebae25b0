"""`python -m trainers.convert --input=minilm`: a real pretrained BERT served from raw text."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_convert_minilm_and_serve_sentence_embeddings(tmp_path):
    export_dir = str(tmp_path / "minilm")
    result = subprocess.run([sys.executable, "-m", "trainers.convert", "--input=minilm",
                             f"--export_dir={export_dir}", "--max_seq_length=64"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported" in result.stdout
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
             "The stock market fell sharply today.", ""]
    outputs = str(tmp_path / "out.npz")
    check = subprocess.run(
        [sys.executable, "-m", "kerasllm.export.check", os.path.join(export_dir, "1"),
         f"--inputs_json={json.dumps({'text': texts, 'text_b': [''] * 4})}",
         f"--outputs_file={outputs}"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-3000:]
    embeddings = np.load(outputs)["serving_default/sentence_embedding"]
    np.testing.assert_allclose(np.linalg.norm(embeddings[:3], axis=1), 1.0, rtol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]


def test_convert_names_a_missing_directory(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trainers.convert",
                             f"--input={tmp_path}/nowhere"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"{tmp_path}/nowhere" in result.stderr.strip().splitlines()[-1]
