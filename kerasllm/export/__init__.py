"""SavedModel export for TF Serving: signatures on raw text, one module per task
(`bert_signatures`, `classifier_signatures`, `tagging_signatures`, `qa_signatures`,
`gpt_signatures`, `seq2seq_signatures`) over what each does with its inputs first
(`inputs`: row checks, clamped settings); warmup requests (`warmup`); atomic,
versioned, world-readable writes (`versioned`, `saved_model`); `check`, which loads
the result the way the server does; and `load`, an export called from Python:

    model = kerasllm.export.load("saved_models/llama_tiny")
    model.generate(prompt="To be, or")["text"]

This package imports nothing but TensorFlow and tensorflow-text: the checker runs
in processes that need no more.
"""
from kerasllm.export.loaded import load  # noqa: F401
