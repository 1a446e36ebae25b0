"""A reader for SWORD "zText" Bible modules (the format of CrossWire's Bible
software, which Debian ships as the sword-text-* packages).

A module folder holds, per testament ("ot", "nt"), three files:
  <t>.bzz  zlib-compressed blocks of text (a book per block for BlockType=BOOK);
  <t>.bzs  12-byte little-endian block records: offset u32, size u32 (into .bzz)
           and the block's uncompressed size u32;
  <t>.bzv  10-byte little-endian entry records: block u32, offset u32, size u16
           (into that decompressed block); size 0 is an empty entry.
The entries follow the module's versification, here always KJV
(kerasllm.datasets.kjv_versification). Besides one entry per verse SWORD keeps
"intro" entries for the text that comes before a verse: entry 0 (the module
heading, usually empty) and entry 1 (the testament heading), then for every book
a book-intro entry and, before the verses of each chapter, a chapter-intro entry:
    0 module, 1 testament, 2 Gen, 3 Gen 1, 4 Gen 1:1, ..., 34 Gen 1:31, 35 Gen 2, ...
Only verse entries are returned; the intros hold book titles and headings.

Verse text is OSIS (or in older modules GBF or ThML) markup; `strip_markup` keeps
the words a reader sees in the verse and drops notes, headings, Strong's numbers
and the like.
"""
import dataclasses
import html
import os
import re
import struct
import zlib

from kerasllm.data.errors import CorpusError
from kerasllm.datasets.kjv_versification import CHAPTER_VERSES, NEW_TESTAMENT, OLD_TESTAMENT

__all__ = ["TESTAMENTS", "Bible", "SwordModuleError", "read_entries", "read_ztext_bible",
           "strip_markup", "testament_layout"]

# Testament file prefix -> its books, in canonical order.
TESTAMENTS = {"ot": OLD_TESTAMENT, "nt": NEW_TESTAMENT}
_BLOCK_RECORD = struct.Struct("<III")
_ENTRY_RECORD = struct.Struct("<IIH")
# Entry 0 (module heading) and entry 1 (testament heading) of each testament.
_LEADING_ENTRIES = 2


class SwordModuleError(CorpusError):
    """A SWORD module folder is missing files, is corrupt or is not in KJV versification."""


@dataclasses.dataclass(frozen=True)
class Bible:
    """The verses of one SWORD module.

    Attributes:
      books: OSIS ids of the books the module has, in canonical order
        ("Gen", ..., "Mal", "Matt", ..., "Rev"; only the New Testament's for an
        NT-only module).
      verses: {(book, chapter, verse): plain text}, e.g. ("John", 3, 16), in
        canonical order, one key per verse of the KJV versification of `books`;
        a verse the module leaves empty (one merged into its neighbour, say)
        is "".
    """

    books: tuple
    verses: dict


def testament_layout(books):
    """Where each chapter and verse of `books` sits among a testament's entries.

    Returns:
      (chapter_entries, verse_entries, entry_count):
        chapter_entries: {(book, chapter): index of its chapter-intro entry};
        verse_entries: [((book, chapter, verse), entry index)] in canonical order;
        entry_count: the number of entries the testament's .bzv must have.
    """
    chapter_entries, verse_entries = {}, []
    index = _LEADING_ENTRIES
    for book in books:
        index += 1  # the book intro
        for chapter, verses in enumerate(CHAPTER_VERSES[book], start=1):
            chapter_entries[(book, chapter)] = index
            index += 1
            for verse in range(1, verses + 1):
                verse_entries.append(((book, chapter, verse), index))
                index += 1
    return chapter_entries, verse_entries, index


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise SwordModuleError(f"Cannot read the SWORD module file {path}: {error}.") from error


def _records(data, record, path):
    if len(data) % record.size:
        raise SwordModuleError(
            f"{path} is {len(data)} bytes, not a whole number of {record.size}-byte records; "
            "the module is truncated or corrupt.")
    return [record.unpack_from(data, offset) for offset in range(0, len(data), record.size)]


def read_entries(module_dir, testament, encoding="utf-8"):
    """The raw markup of every index entry of one testament of a zText module.

    Args:
      module_dir: the folder holding ot.bzs, ot.bzv, ot.bzz, nt.bzs, ...
      testament: "ot" or "nt".
      encoding: the module's text encoding (its .conf's Encoding; UTF-8 for
        every current module, Latin-1 for some old ones).

    Returns:
      list of str, one per .bzv record (intros included; "" for empty ones).

    Raises:
      SwordModuleError: a file is missing or corrupt, or an entry is not valid
        text in `encoding`.
    """
    paths = {kind: os.path.join(module_dir, f"{testament}.{kind}") for kind in ("bzs", "bzv", "bzz")}
    blocks = _records(_read(paths["bzs"]), _BLOCK_RECORD, paths["bzs"])
    entries = _records(_read(paths["bzv"]), _ENTRY_RECORD, paths["bzv"])
    compressed = _read(paths["bzz"])
    texts, unpacked = [], {}
    for index, (block, offset, size) in enumerate(entries):
        if size == 0:
            texts.append("")
            continue
        if block >= len(blocks):
            raise SwordModuleError(f"{paths['bzv']} entry {index} points at block {block}, but "
                                   f"{paths['bzs']} lists only {len(blocks)}; the module is corrupt.")
        if block not in unpacked:
            start, length, expected = blocks[block]
            try:
                unpacked[block] = zlib.decompress(compressed[start:start + length])
            except zlib.error as error:
                raise SwordModuleError(f"Block {block} of {paths['bzz']} does not decompress "
                                       f"({error}); the module is corrupt.") from error
            if len(unpacked[block]) != expected:
                raise SwordModuleError(
                    f"Block {block} of {paths['bzz']} unpacks to {len(unpacked[block])} bytes, "
                    f"{paths['bzs']} says {expected}; the module is corrupt.")
        raw = unpacked[block][offset:offset + size]
        if len(raw) != size:
            raise SwordModuleError(f"{paths['bzv']} entry {index} runs past the end of block "
                                   f"{block}; the module is corrupt.")
        try:
            texts.append(raw.decode(encoding))
        except UnicodeDecodeError as error:
            raise SwordModuleError(f"{paths['bzz']}: entry {index} is not {encoding} text "
                                   f"({error}); pass the module's Encoding.") from error
    return texts


# OSIS <chapter sID="Gen.1" osisID="Gen.1"/> (the start marker; end markers have eID).
_CHAPTER_START = re.compile(r'<chapter\b[^>]*?\bosisID="([^".]+)\.(\d+)"[^>]*>')


def _check_versification(texts, testament, books, chapter_entries, entry_count, module_dir):
    """Raises unless the entries fit the KJV layout of `books`: the right count, and
    every OSIS chapter marker in its chapter's intro entry (this also catches a
    wrong verse count anywhere in the table, which would shift all later chapters)."""
    if len(texts) != entry_count:
        raise SwordModuleError(
            f"{module_dir}: {testament}.bzv has {len(texts)} entries, but the KJV versification "
            f"of {books[0]}..{books[-1]} needs {entry_count}; the module is not in KJV "
            "versification (see Versification= in its .conf).")
    for index, text in enumerate(texts):
        for match in _CHAPTER_START.finditer(text):
            chapter = (match.group(1), int(match.group(2)))
            if chapter_entries.get(chapter) != index:
                raise SwordModuleError(
                    f"{module_dir}: the marker of chapter {chapter[0]} {chapter[1]} is in "
                    f"{testament} entry {index}, where KJV versification expects "
                    f"{chapter_entries.get(chapter, 'no such chapter')}; the module is not "
                    "in KJV versification.")


# Elements whose content is not verse text: footnotes and cross-references (OSIS
# and ThML <note>, GBF <RF>..<Rf>) and GBF section titles (<TS>..<Ts>).
_DROPPED = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>|<RF>.*?<Rf>|<TS>.*?<Ts>",
                      re.DOTALL)
# Titles are dropped too (section headings, the acrostic letters of Psalm 119),
# except canonical ones: the Psalms' superscriptions ("A Psalm of David") are
# part of the Hebrew text and translations print them in verse 1.
_TITLE = re.compile(r"<title\b([^>]*)>(.*?)</title>", re.DOTALL)
# Tags that separate words (line, line group, paragraph, verse and chapter breaks);
# all other tags sit inside words' runs and are removed without a space.
_BREAK_TAG = re.compile(r"<(?:/?(?:l|lg|lb|p|div|br|chapter|verse|title|milestone|CM|CL)\b)[^>]*>",
                        re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
# Left-over USFM character styles ("\nd LORD\+nd*") from converting some modules.
_USFM_MARKER = re.compile(r"\\\+?[a-z]+\d*\*?")


def strip_markup(markup):
    """OSIS / GBF / ThML verse markup -> the verse's plain text.

    Keeps every word of the verse (words tagged with Strong's numbers, the
    translators' added words, divine names, quotations, canonical Psalm titles);
    drops notes and cross-references with their content, non-canonical titles,
    all attributes, the "¶" paragraph signs and left-over USFM markers; unescapes
    entities and collapses whitespace runs to single spaces (no leading or
    trailing space).
    """
    text = _DROPPED.sub(" ", markup)
    text = _TITLE.sub(lambda m: f" {m.group(2)} " if 'canonical="true"' in m.group(1) else " ",
                      text)
    text = _TAG.sub("", _BREAK_TAG.sub(" ", text))
    text = _USFM_MARKER.sub("", html.unescape(text)).replace("¶", " ")
    return " ".join(text.split())


def read_ztext_bible(module_dir, encoding="utf-8"):
    """The verses of the zText Bible module in `module_dir`, as plain text.

    A testament whose files are all absent is left out (NT-only modules);
    the entries of each present one are checked against the KJV versification.

    Args:
      module_dir: the folder holding the ot.* / nt.* files.
      encoding: the module's text encoding (see read_entries).

    Returns:
      Bible: books in canonical order and {(book, chapter, verse): text}
        (see strip_markup).

    Raises:
      SwordModuleError: files are missing or corrupt, or the module is not in
        KJV versification.
    """
    books, verses = [], {}
    for testament, testament_books in TESTAMENTS.items():
        present = [os.path.exists(os.path.join(module_dir, f"{testament}.{kind}"))
                   for kind in ("bzs", "bzv", "bzz")]
        if not any(present):
            continue
        texts = read_entries(module_dir, testament, encoding)
        chapter_entries, verse_entries, entry_count = testament_layout(testament_books)
        _check_versification(texts, testament, testament_books, chapter_entries, entry_count,
                             module_dir)
        books.extend(testament_books)
        for key, index in verse_entries:
            verses[key] = strip_markup(texts[index])
    if not books:
        raise SwordModuleError(f"{module_dir} has no zText Bible files (ot.bzs, nt.bzs, ...).")
    return Bible(books=tuple(books), verses=verses)
