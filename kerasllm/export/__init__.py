"""SavedModel export for TF Serving: signatures on raw text (`bert_signatures`),
atomic versioned writes (`versioned`, `saved_model`), and `check`, which loads the
result the way the server does. Import the submodules directly: the checker runs
in processes that need nothing but TensorFlow and tensorflow-text."""
