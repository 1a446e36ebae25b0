"""trainers.convert --input=minilm: a real pretrained BERT served from raw text."""
import json
import os

import numpy as np

from tests.fresh_process import serve_in_fresh_process
from tests.trainers.trainer_runs import Trainer

trainer = Trainer("convert")


def test_convert_minilm_and_serve_sentence_embeddings(tmp_path):
    export_dir = str(tmp_path / "minilm")
    output = trainer.run("--input=minilm", f"--export_dir={export_dir}", "--max_seq_length=64")
    assert f"exported {export_dir}/1" in output
    with open(os.path.join(export_dir, "1", "assets.extra", "kerasllm.json")) as f:
        metadata = json.load(f)
    assert metadata["tokenizer"]["kind"] == "wordpiece"
    assert len(metadata["tokenizer_sha256"]) == 64
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
             "The stock market fell sharply today.", ""]
    served = serve_in_fresh_process(os.path.join(export_dir, "1"),
                                    {"text": texts, "text_b": [""] * 4}, str(tmp_path))
    embeddings = served["serving_default/sentence_embedding"]
    np.testing.assert_allclose(np.linalg.norm(embeddings[:3], axis=1), 1.0, rtol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]


def test_convert_names_a_missing_directory_in_one_line(tmp_path):
    code, output = trainer.run_fresh(f"--input={tmp_path}/nowhere")
    trainer.assert_one_line_error(code, output, f"{tmp_path}/nowhere")
