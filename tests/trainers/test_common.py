"""The plumbing every trainer shares: sequence length against the position table, the
export root and its version check, the flags recorded in export metadata."""
import pytest
from absl import flags

from kerasllm.errors import DataError
from kerasllm.export.errors import ExportError
from kerasllm.models import registry
from trainers import common, shared_flags

TABLE_32 = registry.get("bert_tiny").replace(max_sequence_length=32)


def parsed(*argv):
    flag_values = flags.FlagValues()
    flags.DEFINE_integer("max_seq_length", 64, "", flag_values=flag_values)
    shared_flags.define_export_flags(flag_values, "<name>")
    flag_values(["trainer", *argv])
    return flag_values


def test_the_default_sequence_length_shrinks_to_a_short_position_table():
    assert common.sequence_length(parsed(), TABLE_32, "tiny") == 32
    assert common.sequence_length(parsed(), registry.get("bert_tiny"), "tiny") == 64
    assert common.sequence_length(parsed("--max_seq_length=16"), TABLE_32, "tiny") == 16


def test_an_explicit_sequence_length_beyond_the_table_is_named():
    with pytest.raises(DataError, match=r"--max_seq_length=40 is larger than tiny's .*\(32\)"):
        common.sequence_length(parsed("--max_seq_length=40"), TABLE_32, "tiny")


def test_export_root_and_an_existing_version(tmp_path):
    assert common.export_root(parsed(), "run") == "saved_models/run"
    (tmp_path / "3").mkdir()
    assert common.export_root(parsed(f"--export_dir={tmp_path}", "--export_version=4"),
                              "run") == str(tmp_path)
    with pytest.raises(ExportError, match=f"{tmp_path}/3 already exists"):
        common.export_root(parsed(f"--export_dir={tmp_path}", "--export_version=3"), "run")


def test_flags_set_are_the_ones_given():
    assert common.flags_set(parsed("--max_seq_length=16", "--noexport")) == {
        "export": False, "max_seq_length": 16}


def model_flags(*argv):
    flag_values = flags.FlagValues()
    shared_flags.define_model_flags(flag_values, "seq2seq", "seq2seq_tiny")
    flag_values(["trainer", *argv])
    return flag_values


def test_model_settings_change_the_named_config():
    config = shared_flags.model_config_from_flags(
        model_flags("--model_settings=norm_position=post,dropout=0.1,tie_embeddings=false"),
        "seq2seq", "train_seq2seq")
    assert config == registry.get("seq2seq_tiny").replace(
        norm_position="post", dropout=0.1, tie_embeddings=False)


@pytest.mark.parametrize("argv, message", [
    (["--model=gpt_tiny"], "--model=gpt_tiny is a gpt model; train_seq2seq trains"),
    (["--model_settings=dropout"], "--model_settings: 'dropout' is not name=value"),
    (["--model_settings=drop=0.1"], "Seq2SeqConfig has no field 'drop'; its fields: "),
    (["--model_settings=dropout=lots"], "dropout is a float, got 'lots'"),
    (["--model_settings=tie_embeddings=1"], "tie_embeddings is true or false, got '1'"),
    (["--model_settings=norm_position=middle"], "norm_position must be one of"),
])
def test_a_wrong_model_or_setting_is_named(argv, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        shared_flags.model_config_from_flags(model_flags(*argv), "seq2seq", "train_seq2seq")
