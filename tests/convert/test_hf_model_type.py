"""A Hugging Face directory is named by the model its config.json says it holds: a
model kerasllm does not convert is "not supported", listing what is, whichever loader
is asked, before any complaint about the files that loader would need."""
import json

import pytest

from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_bert import load_hf_bert
from kerasllm.convert.hf_gpt import load_hf_gpt
from kerasllm.convert.hf_model_type import hf_model_type


@pytest.mark.parametrize("loader", [load_hf_bert, load_hf_gpt])
def test_a_mistral_directory_is_not_supported(tmp_path, loader):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "mistral", "architectures": ["MistralForCausalLM"]}))
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ConversionError) as raised:
        loader(tmp_path)
    assert str(raised.value) == (f"{tmp_path} holds a 'mistral' model (config.json "
                                 "model_type): mistral is not supported; supported: bert, "
                                 "gpt2, llama.")


def test_model_types(tmp_path):
    assert hf_model_type(tmp_path) is None  # no config.json
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    assert hf_model_type(tmp_path) == "bert"  # early BERT configs name no model_type
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert hf_model_type(tmp_path) == "llama"
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConversionError, match="holds a JSON list"):
        hf_model_type(tmp_path)
