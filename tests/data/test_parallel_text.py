"""Parallel text: aligned files, TSVs, and the bucketed seq2seq dataset."""
import numpy as np
import pytest

from kerasllm.data.parallel_text import (EmptySideError, ParallelLineCountError,
                                         ParallelTextError, bucket_widths, parallel_dataset,
                                         parallel_dataset_fn, read_parallel_files,
                                         read_parallel_tsv)
from kerasllm.datasets.bible_parallel import kjv_to_reina_valera
from kerasllm.errors import DataError
from kerasllm.tokenizers.sentencepiece import train_sentencepiece

BOS, EOS = 2, 3


def write(path, data):
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return str(path)


def test_read_parallel_files(tmp_path):
    source = write(tmp_path / "en.txt", "\ufeffHello world\r\n\r\n  Good night \r\nYes\n")
    target = write(tmp_path / "es.txt", "Hola mundo\n\nBuenas noches\n\n")
    # The BOM, "\r", surrounding spaces and the line blank in both files go; the
    # line blank in one file only stays, as an empty sentence.
    assert read_parallel_files(source, target) == (
        ["Hello world", "Good night", "Yes"], ["Hola mundo", "Buenas noches", ""])


def test_line_count_mismatch_names_the_first_differing_line(tmp_path):
    source = write(tmp_path / "en.txt", "a\nb\nc\nd\n")
    target = write(tmp_path / "es.txt", "A\nB\n\nC\nD\n")
    with pytest.raises(ParallelLineCountError,
                       match=r"en.txt has 4 lines but .*es.txt has 5.* line 3: it is blank in "
                             r".*es.txt but not in .*en.txt"):
        read_parallel_files(source, target)
    target = write(tmp_path / "es.txt", "A\nB\n")
    with pytest.raises(ParallelLineCountError,
                       match=r"has 4 lines but .* has 2.* line 3: it is in .*en.txt but past "
                             r"the end of .*es.txt"):
        read_parallel_files(source, target)


def test_file_errors_name_the_file_and_line(tmp_path):
    source = write(tmp_path / "en.txt", "a\nb\n")
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(ParallelTextError, match="nope.txt' does not exist"):
        read_parallel_files(source, missing)
    latin1 = write(tmp_path / "es.txt", "a\nni\xf1o\n".encode("latin-1"))
    with pytest.raises(ParallelTextError, match=r"es.txt: line 2 is not UTF-8"):
        read_parallel_files(source, latin1)
    empty = write(tmp_path / "empty.txt", "\n\n")
    with pytest.raises(ParallelTextError, match="no sentence pairs"):
        read_parallel_files(empty, empty)


@pytest.mark.parametrize("empty_side", ["en.txt", "es.txt"])
def test_a_side_of_only_empty_lines_is_named(tmp_path, empty_side):
    texts = {"en.txt": "In the beginning\nAnd the earth\n",
             "es.txt": "En el principio\nY la tierra\n"}
    texts[empty_side] = "\n \n"
    paths = [write(tmp_path / name, text) for name, text in texts.items()]
    with pytest.raises(EmptySideError, match=rf"^\S*{empty_side} has only empty lines: every "
                                             r"one of the 2 pairs has an empty"):
        read_parallel_files(*paths)
    column = "target" if empty_side == "es.txt" else "source"
    rows = [("Hello", "Hola"), ("Bye", "Adiós")]
    tsv = write(tmp_path / "pairs.tsv", "source\ttarget\n" + "".join(
        f"{'' if column == 'source' else s}\t{'' if column == 'target' else t}\n"
        for s, t in rows))
    with pytest.raises(EmptySideError, match=f"the '{column}' column of .*pairs.tsv has only "
                                             "empty lines"):
        read_parallel_tsv(tsv)


def test_a_line_separator_inside_a_sentence_does_not_split_it(tmp_path):
    source = write(tmp_path / "en.txt", "one\u2028line\nnext\n")
    target = write(tmp_path / "es.txt", "una\u0085línea\nsiguiente\n")
    assert read_parallel_files(source, target)[1] == ["una\u0085línea", "siguiente"]


def test_read_parallel_tsv(tmp_path):
    path = write(tmp_path / "pairs.tsv",
                 "id\ttarget\tsource\n1\tHola\tHello\n\n2\t\t\n3\tAdiós \t Bye\n4\tSí\t\n")
    assert read_parallel_tsv(path) == (["Hello", "Bye", ""], ["Hola", "Adiós", "Sí"])
    # Row 2 is no longer blank on both sides when "id" is its source.
    assert read_parallel_tsv(path, source_column="id")[0] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("text, message", [
    ("src\ttarget\nHello\tHola\n", r"header row has no 'source' column \(its columns: 'src', "
                                   r"'target'\)"),
    ("source\ttarget\tsource\na\tb\tc\n", "repeats the 'source' column"),
    ("source\ttarget\nHello\tHola\nBye\n", "line 3 has 1 tab-separated fields but the header "
                                           "has 2"),
    ("", "is empty"),
    ("source\ttarget\n", "no sentence pairs"),
])
def test_tsv_errors(tmp_path, text, message):
    with pytest.raises(ParallelTextError, match=message):
        read_parallel_tsv(write(tmp_path / "pairs.tsv", text))


def test_bucket_widths():
    assert bucket_widths(64, 72, num_buckets=4) == [(16, 24), (32, 40), (48, 56), (64, 72)]
    assert bucket_widths(10, 5, num_buckets=8) == [(8, 5), (10, 5)]
    assert bucket_widths(30, 30, num_buckets=1) == [(30, 30)]


@pytest.fixture(scope="module")
def pairs():
    sources, targets = kjv_to_reina_valera("validation")
    return sources[:300], targets[:300]


@pytest.fixture(scope="module")
def tokenizer(pairs):
    sources, targets = pairs
    return train_sentencepiece(lines=sources + targets, vocab_size=400)


def tokens(tokenizer, text):
    return tokenizer.tokenize([text])[0].numpy().tolist()


def rows(ids, mask):
    return [row[:length].tolist() for row, length in zip(ids.numpy(), mask.numpy().sum(1))]


def test_examples_are_source_eos_and_bos_target_eos(pairs, tokenizer):
    sources = ["Jesus wept.", "", pairs[0][0]]
    targets = ["Y lloró Jesús.", "Amén.", ""]
    dataset = parallel_dataset(sources, targets, tokenizer, max_source_length=256,
                               max_target_length=256, batch_size=8, training=False,
                               bos_id=BOS, eos_id=EOS)
    [batch] = list(dataset)
    assert set(batch) == {"source_ids", "source_padding_mask", "target_ids",
                          "target_padding_mask"}
    assert all(value.dtype == "int32" for value in batch.values())
    assert rows(batch["source_ids"], batch["source_padding_mask"]) == [
        tokens(tokenizer, text) + [EOS] for text in sources]
    assert rows(batch["target_ids"], batch["target_padding_mask"]) == [
        [BOS] + tokens(tokenizer, text) + [EOS] for text in targets]
    for side in ("source", "target"):
        ids, mask = batch[f"{side}_ids"].numpy(), batch[f"{side}_padding_mask"].numpy()
        assert ids.shape == mask.shape and ids.shape[1] % 8 == 0
        assert (ids[mask == 0] == 0).all() and mask[:, 0].all()  # padded with pad id 0


def test_long_sentences_are_truncated_keeping_eos(pairs, tokenizer):
    sources, targets = pairs
    batch = next(iter(parallel_dataset(sources[:4], targets[:4], tokenizer, max_source_length=10,
                                       max_target_length=12, batch_size=4, training=False,
                                       bos_id=BOS, eos_id=EOS)))
    assert batch["source_ids"].shape == (4, 10) and batch["target_ids"].shape == (4, 12)
    np.testing.assert_array_equal(batch["source_ids"][:, -1], EOS)
    np.testing.assert_array_equal(batch["target_ids"][:, 0], BOS)
    np.testing.assert_array_equal(batch["target_ids"][:, -1], EOS)
    assert batch["source_ids"][0, :9].numpy().tolist() == tokens(tokenizer, sources[0])[:9]


def test_short_pairs_get_narrow_batches(pairs, tokenizer):
    sources, targets = pairs
    short = [(s, t) for s, t in zip(sources, targets) if len(s) < 80 and len(t) < 80]
    assert len(short) >= 4
    widths = bucket_widths(512, 512)
    dataset = parallel_dataset([s for s, _ in short], [t for _, t in short], tokenizer,
                               max_source_length=512, max_target_length=512, batch_size=4,
                               training=False, bos_id=BOS, eos_id=EOS)
    for batch in dataset:
        shape = (batch["source_ids"].shape[1], batch["target_ids"].shape[1])
        assert shape in widths and shape[0] < 512 and shape[1] < 512


def test_evaluation_is_one_pass_in_order(pairs, tokenizer):
    sources, targets = pairs
    dataset = parallel_dataset(sources, targets, tokenizer, max_source_length=128,
                               max_target_length=128, batch_size=32, training=False,
                               bos_id=BOS, eos_id=EOS)
    batches = list(dataset)
    assert [len(b["source_ids"]) for b in batches] == [32] * 9 + [12]
    widths = bucket_widths(128, 128)
    assert all((b["source_ids"].shape[1], b["target_ids"].shape[1]) in widths for b in batches)
    first = rows(batches[0]["source_ids"], batches[0]["source_padding_mask"])
    assert first == [tokens(tokenizer, text)[:127] + [EOS] for text in sources[:32]]


def test_training_repeats_shuffled_full_batches_of_bucket_shapes(pairs, tokenizer):
    sources, targets = pairs

    def first_batches(seed):
        dataset = parallel_dataset(sources, targets, tokenizer, max_source_length=256,
                                   max_target_length=256, batch_size=16, training=True,
                                   seed=seed, bos_id=BOS, eos_id=EOS)
        return list(dataset.take(40))  # 640 pairs: more than two passes

    batches = first_batches(seed=5)
    widths = bucket_widths(256, 256)
    assert all(b["source_ids"].shape[0] == 16 for b in batches)
    shapes = {(b["source_ids"].shape[1], b["target_ids"].shape[1]) for b in batches}
    assert shapes <= set(widths) and len(shapes) > 1
    for batch in batches:
        # Every pair in a batch fits its bucket, and some need the full width of a side.
        lengths = [batch[f"{side}_padding_mask"].numpy().sum(1).max() for side in ("source",
                                                                                 "target")]
        widths_before = [w for w in widths if w < (batch["source_ids"].shape[1],
                                                   batch["target_ids"].shape[1])]
        assert not any(lengths[0] <= s and lengths[1] <= t for s, t in widths_before)
    again = first_batches(seed=5)
    np.testing.assert_array_equal(batches[0]["source_ids"], again[0]["source_ids"])
    other = first_batches(seed=6)
    assert any(a["source_ids"].shape != b["source_ids"].shape
               or not np.array_equal(a["source_ids"], b["source_ids"])
               for a, b in zip(batches, other))
    dataset = parallel_dataset(sources, targets, tokenizer, max_source_length=256,
                               max_target_length=256, batch_size=16, training=True, seed=5,
                               bos_id=BOS, eos_id=EOS)
    assert dataset.element_spec["source_ids"].shape.as_list() == [16, None]


def test_start_batch_gives_the_stream_from_there(pairs, tokenizer):
    sources, targets = pairs
    settings = dict(max_source_length=64, max_target_length=64, batch_size=16, training=True,
                    seed=4, bos_id=BOS, eos_id=EOS)
    start = len(sources) // 16 - 1  # the last batch of epoch 0
    whole = list(parallel_dataset(sources, targets, tokenizer, **settings).take(start + 3))
    resumed = list(parallel_dataset(sources, targets, tokenizer, start_batch=start,
                                    **settings).take(3))
    for got, want in zip(resumed, whole[start:], strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_dataset_fn_gives_each_pipeline_its_share(pairs, tokenizer):
    import tensorflow as tf
    sources, targets = pairs
    dataset_fn = parallel_dataset_fn(sources, targets, tokenizer, global_batch_size=8, seed=1,
                                     max_source_length=64, max_target_length=64,
                                     bos_id=BOS, eos_id=EOS)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batch = next(iter(dataset_fn(context)))
    assert batch["source_ids"].shape[0] == 4


@pytest.mark.parametrize("settings, message", [
    ({"max_source_length": 1}, "a source needs at least 2"),
    ({"max_target_length": 2}, "a target at least 3"),
    ({"batch_size": 0}, "must be at least 1"),
])
def test_bad_settings(tokenizer, settings, message):
    arguments = dict(max_source_length=16, max_target_length=16, batch_size=2, training=False,
                     bos_id=BOS, eos_id=EOS)
    with pytest.raises(DataError, match=message):
        parallel_dataset(["a"], ["b"], tokenizer, **{**arguments, **settings})
    with pytest.raises(DataError, match="2 sources but 1 targets"):
        parallel_dataset(["a", "b"], ["c"], tokenizer, **arguments)
    with pytest.raises(DataError, match="no sentence pairs"):
        parallel_dataset([], [], tokenizer, **arguments)
