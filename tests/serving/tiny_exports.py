"""Tiny untrained exports the serving tests put behind the development server."""
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.seq2seq_signatures import seq2seq_signatures, warmup_inputs
from kerasllm.models import Seq2SeqLM


def tiny_seq2seq_export(export_root, tokenizer):
    """A one-layer seq2seq_tiny translator's export (16 source tokens, 6 target tokens,
    2 beams) under `export_root`; returns its version directory."""
    model = Seq2SeqLM.from_name("seq2seq_tiny", vocab_size=tokenizer.vocab_size,
                                num_encoder_layers=1, num_decoder_layers=1).build_for_inputs()
    return export_saved_model(
        export_root, seq2seq_signatures(model, tokenizer, max_source_length=16,
                                        max_target_length=6, max_beam_size=2),
        [model, tokenizer], check=False, warmup_inputs=warmup_inputs())
