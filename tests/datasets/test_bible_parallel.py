"""The KJV -> Reina-Valera 1909 translation task, from the real Debian packages
(fetched with apt into the shared kerasllm cache on first use)."""
import dataclasses
import os

import pytest

from kerasllm.datasets import bible_parallel
from kerasllm.datasets.bible_parallel import (KJV, SPLIT_BOOKS, BibleCorpusError,
                                              kjv_to_reina_valera, module_folder,
                                              parallel_verses, split_of_book, splits)
from kerasllm.datasets.cache import cache_root
from kerasllm.errors import DataError


@pytest.fixture(scope="module")
def verses():
    return parallel_verses()


def test_modules_are_cached_with_their_files():
    folder = module_folder(KJV)
    assert folder == os.path.join(cache_root(), "sword-text-kjv-14.3-1")
    assert {"ot.bzs", "ot.bzv", "ot.bzz", "nt.bzs", "nt.bzv", "nt.bzz", "copyright"} <= set(
        os.listdir(folder))


def test_pairs(verses):
    pairs = {key: (english, spanish) for key, english, spanish in verses}
    assert len(verses) == len(pairs) == 30516
    assert pairs[("Gen", 1, 1)] == ("In the beginning God created the heaven and the earth.",
                                    "En el principio crió Dios los cielos y la tierra.")
    assert pairs[("John", 3, 16)][1] == (
        "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito, para que "
        "todo aquel que en él cree, no se pierda, mas tenga vida eterna.")
    assert all(english and spanish for _, english, spanish in verses)
    # Chapter openings recased as the text writes the words elsewhere.
    assert pairs[("Gen", 7, 1)][1].startswith("Y Jehová dijo á Noé")
    assert pairs[("2Chr", 24, 1)][1].startswith("De siete años era Joas")
    assert pairs[("Ps", 3, 1)][1].startswith("Salmo de David, cuando huía de delante de "
                                             "Absalom su hijo. ¡Oh Jehová")
    # Psalm 119's letter names are gone, as in the KJV.
    assert pairs[("Ps", 119, 9)][1].startswith("¿Con qué limpiará el joven")


def test_chapters_shifted_by_the_spanish_versification_are_dropped(verses):
    chapters = {key[:2] for key, _, _ in verses}
    for dropped in [("Num", 12), ("Num", 13), ("Job", 39), ("Jonah", 2), ("2Cor", 13)]:
        assert dropped not in chapters
    assert ("Num", 14) in chapters and ("Jonah", 3) in chapters


def test_splits_hold_out_whole_books(verses):
    parts = splits()
    assert {split: len(sources) for split, (sources, _) in parts.items()} == {
        "train": 28002, "validation": 1336, "test": 1178}
    assert all(len(sources) == len(targets) for sources, targets in parts.values())
    books = {split: {key[0] for key, _, _ in verses if split_of_book(key[0]) == split}
             for split in parts}
    assert books["validation"] == set(SPLIT_BOOKS["validation"])
    assert books["test"] == set(SPLIT_BOOKS["test"])
    assert len(books["train"]) == 60
    assert not books["train"] & (books["validation"] | books["test"])
    sources, targets = kjv_to_reina_valera("test")
    assert sources[0].startswith("Now it came to pass in the days when the judges ruled")
    assert targets[0].startswith("Y aconteció en los días que gobernaban los jueces")
    assert set(sources).isdisjoint(kjv_to_reina_valera("validation")[0])


def test_unknown_split_and_book():
    with pytest.raises(DataError, match="split must be one of train, validation, test"):
        kjv_to_reina_valera("dev")
    with pytest.raises(DataError, match="Unknown book 'Genesis'"):
        split_of_book("Genesis")


def test_without_apt_get_the_error_says_to_pass_your_own_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    bible_parallel._parallel_verses.cache_clear()
    try:
        with pytest.raises(BibleCorpusError, match="apt-get is not available") as error:
            splits(cache_dir=str(tmp_path / "cache"))
    finally:
        bible_parallel._parallel_verses.cache_clear()
    assert "--train_source/--train_target" in str(error.value)


def test_another_version_is_a_clear_error(tmp_path):
    other = dataclasses.replace(KJV, version="0.1-1")
    with pytest.raises(BibleCorpusError, match="not the pinned version 0.1-1") as error:
        module_folder(other, cache_dir=str(tmp_path))
    assert "apt-cache policy sword-text-kjv" in str(error.value)
    assert "--train_source/--train_target" in str(error.value)


def test_a_wrong_checksum_is_refused(tmp_path):
    corrupt = dataclasses.replace(KJV, sha256="0" * 64)
    with pytest.raises(BibleCorpusError, match="sha256"):
        module_folder(corrupt, cache_dir=str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, corrupt.cache_folder))
