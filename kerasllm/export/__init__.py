"""SavedModel export for TF Serving: signatures on raw text, one module per task
(`bert_signatures`, `classifier_signatures`, `tagging_signatures`, `qa_signatures`,
`gpt_signatures`, `seq2seq_signatures`) over what each does with its inputs first
(`inputs`: row checks, clamped settings); warmup requests (`warmup`); atomic,
versioned, world-readable writes (`versioned`, `saved_model`); and `check`, which
loads the result the way the server does. Import the submodules directly: the
checker runs in processes that need nothing but TensorFlow and tensorflow-text."""
