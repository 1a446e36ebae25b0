"""trainers.convert: a real pretrained BERT served from raw text, a GPT-2 directory and
the real SmolLM2 GGUF served as text generation."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tokenizers import Tokenizer, models, pre_tokenizers

from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_gpt import load_hf_gpt
from kerasllm.export.gpt_signatures import gpt_signatures
from kerasllm.models import registry
from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer
from kerasllm.tokenizers.byte_vocab import byte_alphabet
from tests.convert.gpt_tiny_checkpoint import (TINY_GPT2_CONFIG, gpt2_tensors,
                                               write_gpt_checkpoint)
from tests.convert.gpt_tiny_gguf import write_tiny_gguf
from tests.fresh_process import serve_in_fresh_process
from tests.trainers.trainer_runs import Trainer
from trainers.convert import load_gpt

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
    trainer.assert_one_line_error(code, output, f"{tmp_path}/nowhere does not exist; --input "
                                  "takes a packaged name (minilm, smollm2)")


def test_inputs_of_no_known_kind_are_named(tmp_path):
    mistral = tmp_path / "mistral"
    mistral.mkdir()
    (mistral / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    assert trainer.error(f"--input={mistral}").endswith(
        "mistral is not supported; supported: bert, gpt2, llama.")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8")
    assert trainer.error(f"--input={photos}") == (
        f"{photos} is not a Hugging Face checkpoint directory (no config.json naming a "
        "model_type); --input takes a packaged name (minilm, smollm2), a Hugging Face BERT, "
        "GPT-2 or Llama directory or a Llama GGUF file")
    assert "is not a GGUF file" in trainer.error(f"--input={photos / 'cat.jpg'}")
    run = tmp_path / "run"
    tf.train.Checkpoint(step=tf.Variable(1)).save(str(run / "ckpt"))
    (run / "config.json").write_text(json.dumps({
        "family": "gpt", "config": registry.get("gpt_tiny").to_dict(),
        "tokenizer": {"kind": "sentencepiece"}}))
    assert trainer.error(f"--input={run}").startswith(
        f"{run} is the --model_dir of a kerasllm gpt training run, not a checkpoint to convert")


def test_a_gguf_file_cut_short_is_one_line(tmp_path):
    with open(write_tiny_gguf(tmp_path / "tiny.gguf"), "rb") as f:
        (tmp_path / "cut.gguf").write_bytes(f.read()[:5000])
    assert trainer.error(f"--input={tmp_path / 'cut.gguf'}").startswith(
        f"{tmp_path / 'cut.gguf'} is not a complete GGUF file (5,000 bytes)")


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """A tiny GPT-2 (random weights) with a real byte-level BPE vocabulary: the 256
    byte tokens, a few merges and <|endoftext|>."""
    alphabet = byte_alphabet()
    merges = [("t", "h"), ("th", "e"), ("Ġ", "th"), ("Ġth", "e"), ("a", "n")]
    vocabulary = [*alphabet, *(left + right for left, right in merges), "<|endoftext|>"]
    config = {**TINY_GPT2_CONFIG, "vocab_size": len(vocabulary), "n_positions": 64}
    directory = write_gpt_checkpoint(tmp_path_factory.mktemp("tiny_gpt2"), config,
                                     gpt2_tensors(config))
    with open(os.path.join(directory, "vocab.json"), "w") as f:
        json.dump({token: i for i, token in enumerate(vocabulary)}, f)
    with open(os.path.join(directory, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return directory


def test_convert_a_gpt2_directory_and_serve_generation(tiny_gpt2_dir, tmp_path, monkeypatch):
    # Named `..` from a folder inside it, it exports under saved_models/<its name>.
    work = os.path.join(tiny_gpt2_dir, "work")
    os.makedirs(work)
    monkeypatch.chdir(work)
    output = trainer.run("--input=..", "--max_seq_length=32", "--max_new_tokens=6")
    export_dir = os.path.join(work, "saved_models", os.path.basename(tiny_gpt2_dir))
    assert f"exported saved_models/{os.path.basename(tiny_gpt2_dir)}/1" in output
    prompts = ["the answer", "x", "then the"]
    served = serve_in_fresh_process(
        os.path.join(export_dir, "1"),
        {"prompt": prompts, "max_new_tokens": [6, 2, 6], "temperature": [0.0] * 3,
         "top_k": [0] * 3, "top_p": [1.0] * 3, "seed": [0] * 3, "stop": [""] * 3,
         "length_penalty": [0.6] * 3, "text": prompts}, str(tmp_path))
    model, report = load_hf_gpt(tiny_gpt2_dir)
    tokenizer = ByteLevelBpeTokenizer.from_gpt2_files(
        os.path.join(tiny_gpt2_dir, "vocab.json"), os.path.join(tiny_gpt2_dir, "merges.txt"))
    local = gpt_signatures(model, tokenizer, max_prompt_length=26, max_new_tokens=6)
    greedy = local["serving_default"](tf.constant(prompts))
    np.testing.assert_array_equal(served["serving_default/token_ids"], greedy["token_ids"])
    assert all(n <= most for n, most in zip(served["generate_with_options/num_tokens"], [6, 2, 6]))
    # score: the log-probability the model gives each text, token by token.
    dense = tokenizer.tokenize(tf.constant(prompts)).to_tensor()
    lengths = tokenizer.tokenize(tf.constant(prompts)).row_lengths()
    logits = model({"token_ids": dense, "padding_mask": tf.sequence_mask(lengths, dtype=tf.int32)})
    log_probs = tf.nn.log_softmax(logits["logits"][0, :-1]).numpy()
    first = sum(log_probs[i, dense[0, i + 1]] for i in range(int(lengths[0]) - 1))
    np.testing.assert_allclose(served["score/log_probability"][0], first, rtol=1e-5)
    assert list(served["score/num_tokens"]) == [int(n) - 1 for n in lengths]
    with open(os.path.join(export_dir, "1", "assets.extra", "kerasllm.json")) as f:
        metadata = json.load(f)
    assert metadata["family"] == "gpt" and metadata["tokenizer"]["kind"] == "byte_bpe"
    assert metadata["context_length"] == 64 and "chat" not in metadata["signatures"]
    with open(os.path.join(export_dir, "1", "assets.extra", "batching_params.pbtxt")) as f:
        assert "max_execution_batch_size {\n  value: 8\n}" in f.read()


def test_a_directory_with_only_tokenizer_json_converts(tiny_gpt2_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(tiny_gpt2_dir, name), tmp_path / name)
    with pytest.raises(ConversionError, match="neither vocab.json and merges.txt, nor"):
        load_gpt(str(tmp_path))
    vocab_json, merges_txt = (os.path.join(tiny_gpt2_dir, name)
                              for name in ("vocab.json", "merges.txt"))
    hf = Tokenizer(models.BPE.from_file(vocab_json, merges_txt))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.add_special_tokens(["<|endoftext|>"])
    hf.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "chat_template": "{{ messages }}"}))
    _, tokenizer, _, _, template = load_gpt(str(tmp_path))
    texts = tf.constant(["then the answer<|endoftext|>", "an x  the"])
    reference = ByteLevelBpeTokenizer.from_gpt2_files(vocab_json, merges_txt)
    assert tokenizer.tokenize(texts).to_list() == reference.tokenize(texts).to_list()
    assert tokenizer.eos_id == reference.eos_id and template == "{{ messages }}"


@pytest.mark.slow
def test_convert_smollm2_and_ask_it_in_a_fresh_process(tmp_path):
    """The real SmolLM2-135M-Instruct from its GGUF, exported and asked through TF
    Serving's loading path, with its chat template written into the prompt."""
    export_dir = str(tmp_path / "smollm2")
    trainer.run("--input=smollm2", f"--export_dir={export_dir}", "--max_seq_length=96",
                "--max_new_tokens=16")
    question = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                "<|im_start|>assistant\n")
    served = serve_in_fresh_process(
        os.path.join(export_dir, "1"),
        {"prompt": [question], "max_new_tokens": [16], "temperature": [0.0], "top_k": [0],
         "top_p": [1.0], "seed": [0], "stop": [""], "length_penalty": [0.6],
         "text": [question], "message": ["What is the capital of France?"]}, str(tmp_path))
    answer = served["generate_with_options/text"][0].decode()
    assert "Paris" in answer, answer
    assert served["generate_with_options/finish_reason"][0] == b"stop_token"
    chat_answer = served["chat/text"][0].decode()
    assert "Paris" in chat_answer, chat_answer
    with open(os.path.join(export_dir, "1", "assets.extra", "kerasllm.json")) as f:
        assert "<|im_start|>" in json.load(f)["chat_template"]
