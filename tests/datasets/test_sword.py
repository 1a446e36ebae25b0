"""The SWORD zText reader on the real KJV and RV1909 modules (Debian packages,
fetched with apt into the kerasllm cache on first use)."""
import os
import re
import shutil

import pytest

from kerasllm.datasets.bible_parallel import KJV, REINA_VALERA_1909, module_folder
from kerasllm.datasets.kjv_versification import (BOOKS, CHAPTER_VERSES, NEW_TESTAMENT,
                                                 OLD_TESTAMENT, verse_count)
from kerasllm.datasets import sword
from kerasllm.datasets.sword import SwordModuleError, read_entries, read_ztext_bible, strip_markup


@pytest.fixture(scope="module")
def kjv_dir():
    return module_folder(KJV)


@pytest.fixture(scope="module")
def kjv(kjv_dir):
    return read_ztext_bible(kjv_dir)


def test_versification_table_totals():
    assert len(BOOKS) == 66 and BOOKS[0] == "Gen" and BOOKS[-1] == "Rev"
    assert verse_count() == 31102
    assert verse_count(OLD_TESTAMENT) == 23145 and verse_count(NEW_TESTAMENT) == 7957
    assert sum(len(CHAPTER_VERSES[book]) for book in BOOKS) == 1189
    assert CHAPTER_VERSES["Ps"][118] == 176 and CHAPTER_VERSES["3John"] == (14,)


def test_layout_counts_intro_entries(kjv_dir):
    """Module and testament headings, a book intro, a chapter intro, then verses."""
    chapters, verses, count = sword.testament_layout(OLD_TESTAMENT)
    assert chapters[("Gen", 1)] == 3 and verses[0] == (("Gen", 1, 1), 4)
    assert chapters[("Gen", 2)] == 4 + 31
    assert count == 2 + 39 + 929 + 23145
    assert count == os.path.getsize(os.path.join(kjv_dir, "ot.bzv")) // 10
    assert sword.testament_layout(NEW_TESTAMENT)[2] == os.path.getsize(
        os.path.join(kjv_dir, "nt.bzv")) // 10


def test_kjv_verses(kjv):
    assert kjv.books == BOOKS and len(kjv.verses) == 31102
    assert all(kjv.verses.values())  # the KJV fills every slot
    assert kjv.verses[("Gen", 1, 1)] == "In the beginning God created the heaven and the earth."
    assert kjv.verses[("John", 3, 16)] == (
        "For God so loved the world, that he gave his only begotten Son, that whosoever "
        "believeth in him should not perish, but have everlasting life.")
    assert kjv.verses[("Rev", 22, 21)] == "The grace of our Lord Jesus Christ be with you all. Amen."


def test_markup_is_stripped_to_the_verse_words(kjv):
    # A footnote ("Heb. between the light and between the darkness") is dropped.
    assert kjv.verses[("Gen", 1, 4)] == ("And God saw the light, that it was good: and God "
                                        "divided the light from the darkness.")
    assert kjv.verses[("Gen", 1, 6)].startswith("And God said, Let there be")  # no "¶"
    # Left-over USFM "\nd" markers around a divine name.
    assert kjv.verses[("Exod", 6, 3)].endswith("but by my name JEHOVAH was I not known to them.")
    # A canonical Psalm title stays; Psalm 119's acrostic headings do not.
    assert kjv.verses[("Ps", 3, 1)].startswith("A Psalm of David, when he fled from Absalom")
    assert kjv.verses[("Ps", 119, 9)].startswith("Wherewithal shall a young man")
    text = " ".join(kjv.verses.values())
    # Plain booleans: pytest's diff of a failed `in` over the whole Bible takes minutes.
    assert not set("<>\\¶") & set(text)
    assert re.search(r"strong:[GH]\d", text) is None and ("  " in text) is False
    assert "strong: but as for you" in kjv.verses[("Josh", 23, 9)]  # the word, not markup


def test_spanish_module_and_its_empty_slots():
    bible = read_ztext_bible(module_folder(REINA_VALERA_1909))
    assert bible.verses[("Gen", 1, 1)] == "EN el principio crió Dios los cielos y la tierra."
    assert bible.verses[("John", 3, 16)].startswith("Porque de tal manera amó Dios al mundo")
    # Where its verse division differs from the KJV a slot stays empty.
    assert bible.verses[("Num", 12, 16)] == "" and bible.verses[("Num", 13, 1)].startswith(
        "Y DESPUÉS movió el pueblo de Haseroth")


def test_raw_entries_keep_the_markup(kjv_dir):
    entries = read_entries(kjv_dir, "ot")
    assert entries[0] == "" and 'osisID="Gen.1"' in entries[3]
    assert '<w lemma="strong:H7225">beginning</w>' in entries[4]


@pytest.mark.parametrize("markup, text", [
    ('<w lemma="strong:G2316">God</w> <transChange type="added">is</transChange> love.',
     "God is love."),
    ("word<note n=\"a\">a <i>note</i></note> and <note/>more", "word and more"),
    ('<title type="section">Heading</title>Verse<lb/>text &amp; more', "Verse text & more"),
    ("In the<WH7225> beginning<RF>a footnote<Rf> <FI>was<Fi> it", "In the beginning was it"),
    ('<title canonical="true" type="psalm">A Psalm.</title> Praise', "A Psalm. Praise"),
    ("¶ \\nd LORD\\+nd*  here\n", "LORD here"),
    ("", ""),
])
def test_strip_markup(markup, text):
    assert strip_markup(markup) == text


def copy_module(source, destination):
    shutil.copytree(source, destination)
    return str(destination)


def test_a_module_in_another_versification_is_refused(kjv_dir, tmp_path):
    folder = copy_module(kjv_dir, tmp_path / "module")
    path = os.path.join(folder, "nt.bzv")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-20])  # two entries fewer
    with pytest.raises(SwordModuleError, match="not in KJV versification"):
        read_ztext_bible(folder)


def test_corrupt_and_missing_modules(kjv_dir, tmp_path):
    folder = copy_module(kjv_dir, tmp_path / "module")
    with open(os.path.join(folder, "ot.bzv"), "ab") as f:
        f.write(b"\0\0\0")
    with pytest.raises(SwordModuleError, match="not a whole number of 10-byte records"):
        read_ztext_bible(folder)
    folder = copy_module(kjv_dir, tmp_path / "incomplete")
    os.remove(os.path.join(folder, "ot.bzz"))
    with pytest.raises(SwordModuleError, match="ot.bzz"):
        read_ztext_bible(folder)
    with pytest.raises(SwordModuleError, match="no zText Bible files"):
        read_ztext_bible(str(tmp_path))


def test_a_new_testament_only_module(kjv_dir, tmp_path):
    folder = copy_module(kjv_dir, tmp_path / "module")
    for kind in ("bzs", "bzv", "bzz"):
        os.remove(os.path.join(folder, f"ot.{kind}"))
    bible = read_ztext_bible(folder)
    assert bible.books == NEW_TESTAMENT and len(bible.verses) == 7957
