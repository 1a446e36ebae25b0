"""The default translation task: the English King James Version -> the Spanish
Reina-Valera 1909, verse by verse (both public domain).

The two Bibles come from Debian's SWORD packages sword-text-kjv (14.3-1) and
sword-text-sparv (2.60-1), fetched with `apt-get download`, checked against a
pinned sha256, and their module files unpacked into
`<cache>/sword-text-kjv-14.3-1/` and `<cache>/sword-text-sparv-2.60-1/`
(kerasllm.datasets.cache; concurrent callers are safe). Both modules are in KJV
versification, so verses pair up by (book, chapter, verse).

Pairing (kerasllm.datasets.sword reads the modules):
  * a verse is paired when both sides have text;
  * the RV1909 divides a few chapters differently from the KJV, and SWORD's
    importer then leaves a KJV slot empty and shifts the neighbouring verses
    (its Numbers 13:1 is the KJV's 12:16, so all of its Numbers 13 is one verse
    off). Every chapter holding an empty slot on either side, and the next
    chapter of the same book, is therefore dropped whole: 23 chapters, 586
    verses (Num 12-13, 29-30; 1Sam 23-24; 2Sam 20-21; 2Chr 33-34; Job 35-36,
    38-41; Hos 11-12; Jonah 1-2; Acts 19-20; 2Cor 13). Comparing verse lengths
    finds no misaligned chapter outside these;
  * the RV1909 prints the first word(s) of each chapter in capitals ("EN el
    principio crió Dios..."); these are recased as the rest of the Spanish text
    writes them ("En el principio...", "Y JEHOVÁ dijo" -> "Y Jehová dijo");
  * its Psalm 119 verses 1, 9, ..., 169 start with the Hebrew letter's name
    ("ALEPH."), which the KJV has as a heading (dropped): the name is removed.
This leaves 30,516 pairs.

Splits are by whole books, so no chapter of a held-out book (nor its
near-duplicate parallel passages within that book) is seen in training:
  validation: Joshua, Mark (1,336 pairs): OT narrative and a gospel;
  test: Ruth, Daniel, Romans, Hebrews (1,178 pairs): OT narrative, prophecy
    and apocalyptic, and two epistles;
  train: the other 60 books (28,002 pairs).
These are mid-size books whose genres stay well represented in training
(Judges beside Joshua, Matthew and Luke beside Mark, Ezekiel beside Daniel,
Paul's other letters beside Romans), so the held-out sets measure translation,
not unseen vocabulary, and none of them lost chapters to the alignment rule.
"""
import collections
import dataclasses
import functools
import io
import os
import re
import shutil
import subprocess
import tarfile

from kerasllm.data.chat_examples import Conversation
from kerasllm.data.errors import CorpusError
from kerasllm.datasets.cache import cache_root, cached_folder, check_sha256
from kerasllm.datasets.kjv_versification import BOOKS, CHAPTER_VERSES
from kerasllm.datasets.sword import read_ztext_bible
from kerasllm.errors import DataError

__all__ = ["KJV", "REINA_VALERA_1909", "SPLITS", "SPLIT_BOOKS", "BibleCorpusError",
           "DebianModule", "kjv_to_reina_valera", "module_folder", "parallel_verses",
           "split_of_book", "splits"]

SPLITS = ("train", "validation", "test")
SPLIT_BOOKS = {"validation": ("Josh", "Mark"), "test": ("Ruth", "Dan", "Rom", "Heb")}
_MODULE_FILES = tuple(f"{testament}.{kind}" for testament in ("ot", "nt")
                      for kind in ("bzs", "bzv", "bzz"))
_ALTERNATIVE = ("Alternatively train on your own parallel text: pass aligned files with "
                "--train_source/--train_target (one sentence per line).")


class BibleCorpusError(CorpusError):
    """The KJV / Reina-Valera packages cannot be fetched with apt, are not the pinned
    versions, or are corrupt."""


@dataclasses.dataclass(frozen=True)
class DebianModule:
    """A SWORD Bible module shipped in a pinned Debian package.

    Attributes:
      package: the Debian package, e.g. "sword-text-kjv".
      version: its pinned version, e.g. "14.3-1".
      sha256: hex digest of its .deb; anything else is refused.
      module_path: the zText module folder inside the package.
    """

    package: str
    version: str
    sha256: str
    module_path: str

    @property
    def filename(self):
        return f"{self.package}_{self.version}_all.deb"

    @property
    def cache_folder(self):
        return f"{self.package}-{self.version}"


KJV = DebianModule(
    package="sword-text-kjv", version="14.3-1",
    sha256="9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57",
    module_path="usr/share/sword/modules/texts/ztext/engKJV2006eb")
REINA_VALERA_1909 = DebianModule(
    package="sword-text-sparv", version="2.60-1",
    sha256="5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf",
    module_path="usr/share/sword/modules/texts/ztext/spaRV1909eb")


def _apt_download(module, directory):
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise BibleCorpusError(
            f"Cannot fetch the default translation corpus: apt-get is not available to "
            f"download the Debian package {module.package}.\n{_ALTERNATIVE}")
    os.makedirs(directory)
    requirement = f"{module.package}={module.version}"
    try:
        result = subprocess.run([apt_get, "download", requirement], cwd=directory,
                                capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BibleCorpusError(f"Could not run apt-get to fetch {requirement}: {error}.\n"
                               f"{_ALTERNATIVE}") from error
    deb = os.path.join(directory, module.filename)
    if result.returncode != 0 or not os.path.exists(deb):
        said = result.stderr.strip()[-2000:]
        if re.search(r"Version '.*' for '.*' was not found", said):
            reason = (f"apt knows {module.package} but not the pinned version {module.version} "
                      f"(`apt-cache policy {module.package}` shows what your sources offer); "
                      "the corpus is pinned to the Debian 12 (bookworm) package")
        elif "Unable to locate package" in said:
            reason = (f"apt's package lists have no {module.package}; run `apt-get update`, "
                      "or use Debian 12 (bookworm) sources")
        else:
            reason = f"apt-get download {requirement} failed; check network access"
        raise BibleCorpusError(f"Cannot fetch the default translation corpus: {reason}.\n"
                               f"apt-get said:\n{said}\n{_ALTERNATIVE}")
    try:
        check_sha256(deb, module.sha256, BibleCorpusError)
    except BibleCorpusError as error:
        raise BibleCorpusError(f"{error}\n{_ALTERNATIVE}") from None
    return deb


def _deb_data_tar(deb):
    """The bytes of the data.tar.* member of the .deb (an `ar` archive) at `deb`."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise BibleCorpusError(f"{deb} is not a Debian package (no ar header).")
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise BibleCorpusError(f"{deb} has no data.tar member.")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58])
            data = f.read(size)
            f.read(size % 2)  # ar pads members to an even length
            if name.startswith("data.tar"):
                return data


def _unpack(module, deb, destination):
    """Copies the module's files (and its .conf and copyright, for provenance)
    out of the .deb into `destination`, flat."""
    wanted = {f"{module.module_path}/{name}": name for name in _MODULE_FILES}
    os.makedirs(destination)
    try:
        # The pinned .debs are xz-compressed; "r:*" reads gz, bz2 and xz.
        with tarfile.open(fileobj=io.BytesIO(_deb_data_tar(deb)), mode="r:*") as tar:
            for member in tar.getmembers():
                path = member.name.removeprefix("./")
                if not member.isfile():
                    continue
                if path in wanted:
                    name = wanted[path]
                elif path.startswith("usr/share/sword/mods.d/") and path.endswith(".conf"):
                    name = os.path.basename(path)
                elif path == f"usr/share/doc/{module.package}/copyright":
                    name = "copyright"
                else:
                    continue
                with open(os.path.join(destination, name), "wb") as out:
                    out.write(tar.extractfile(member).read())
    except (tarfile.TarError, ValueError, EOFError, OSError) as error:
        raise BibleCorpusError(f"Cannot unpack {deb}: {error}.") from error
    return destination


def module_folder(module, cache_dir=None):
    """The cached zText folder of `module` (ot.bzs, ..., nt.bzz), fetched on first use.

    Args:
      module: KJV or REINA_VALERA_1909 (a DebianModule).
      cache_dir: cache root; default $KERASLLM_CACHE or ~/.cache/kerasllm.

    Returns:
      path `<cache root>/<package>-<version>`.

    Raises:
      BibleCorpusError: apt-get is missing or fails, offers another version,
        or the .deb's checksum is wrong; the message says how to pass your
        own parallel files instead.
    """
    def fetch(staging):
        deb = _apt_download(module, os.path.join(staging, "download"))
        return _unpack(module, deb, os.path.join(staging, "unpacked"))

    return cached_folder(module.cache_folder, _MODULE_FILES, fetch, BibleCorpusError,
                         f"{module.filename} ({module.module_path}/)", cache_dir)


def split_of_book(book):
    """"train", "validation" or "test": the split holding the OSIS book `book`."""
    for split, books in SPLIT_BOOKS.items():
        if book in books:
            return split
    if book not in CHAPTER_VERSES:
        raise DataError(f"Unknown book {book!r}; books are OSIS ids: {', '.join(BOOKS)}.")
    return "train"


_WORD = re.compile(r"[^\W\d_]+")
# Before a sentence's first word: nothing, or the end of a sentence (a Psalm's
# title), then opening marks.
_SENTENCE_START = re.compile(r"(?:^|[.!?])[\s¡¿(\"']*$")


def _word_cases(texts):
    """{lowercased word: its usual written form}: capitalized if the texts write it
    capitalized more often than not away from the start of a verse, else lowercase."""
    lower, capitalized = collections.Counter(), collections.Counter()
    for text in texts:
        for word in _WORD.findall(text)[1:]:
            if word.islower():
                lower[word] += 1
            elif word[0].isupper() and word[1:].islower():
                capitalized[word.lower()] += 1
    return {word: word.capitalize() for word, count in capitalized.items()
            if count > lower[word]}


def _recase_chapter_opening(text, cases):
    """"EN el principio" -> "En el principio": the first run of capitalized words
    (two letters or more each) written as `cases` says, capitalized where it starts
    a sentence."""
    words = [m for m in _WORD.finditer(text) if len(m.group()) > 1]
    run = []
    for match in words:
        if match.group().isupper() and (not run or not text[run[-1].end():match.start()].strip()):
            run.append(match)
        elif run or match.group().isupper():
            break
    pieces, position = [], 0
    for match in run:
        word = match.group().lower()
        word = cases.get(word, word)
        if _SENTENCE_START.search(text[:match.start()]):
            word = word[0].upper() + word[1:]
        pieces += [text[position:match.start()], word]
        position = match.end()
    return "".join(pieces) + text[position:]


_PSALM_119_LETTER = re.compile(r"^[A-Z]+\.?\s+")


def _clean_spanish(verses):
    """Recases chapter openings and drops Psalm 119's letter names (module docstring)."""
    cases = _word_cases(verses.values())
    cleaned = {}
    for (book, chapter, verse), text in verses.items():
        if book == "Ps" and chapter == 119 and verse % 8 == 1:
            text = _PSALM_119_LETTER.sub("", text)
        if verse == 1:
            text = _recase_chapter_opening(text, cases)
        cleaned[(book, chapter, verse)] = text
    return cleaned


def _misaligned_chapters(*sides):
    """(book, chapter)s with an empty verse on some side, and each one's next chapter."""
    empty = {(book, chapter) for verses in sides
             for (book, chapter, _), text in verses.items() if not text}
    return empty | {(book, chapter + 1) for book, chapter in empty
                    if chapter < len(CHAPTER_VERSES[book])}


@functools.lru_cache(maxsize=4)
def _parallel_verses(root):
    english = read_ztext_bible(module_folder(KJV, root)).verses
    spanish = _clean_spanish(read_ztext_bible(module_folder(REINA_VALERA_1909, root)).verses)
    dropped = _misaligned_chapters(english, spanish)
    return tuple((key, english[key], spanish[key]) for key in english
                 if key[:2] not in dropped and english[key] and spanish.get(key))


def parallel_verses(cache_dir=None):
    """Every (English, Spanish) verse pair, in canonical order, fetching the
    packages on first use (see the module docstring for which verses pair).

    Returns:
      list of ((book, chapter, verse), kjv_text, rv1909_text); 30,516 pairs.

    Raises:
      BibleCorpusError: see module_folder.
    """
    return list(_parallel_verses(cache_root(cache_dir)))


def kjv_to_reina_valera(split, cache_dir=None):
    """One split of the KJV -> RV1909 translation task (see the module docstring).

    Args:
      split: "train" (28,002 pairs), "validation" (1,336) or "test" (1,178).
      cache_dir: cache root; default $KERASLLM_CACHE or ~/.cache/kerasllm.

    Returns:
      (sources, targets): two lists of str, English and Spanish, aligned, in
      canonical verse order.

    Raises:
      DataError: an unknown split.
      BibleCorpusError: see module_folder.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    return splits(cache_dir)[split]


def splits(cache_dir=None):
    """{"train": (sources, targets), "validation": ..., "test": ...} (see
    kjv_to_reina_valera)."""
    result = {split: ([], []) for split in SPLITS}
    for (book, _, _), english, spanish in _parallel_verses(cache_root(cache_dir)):
        sources, targets = result[split_of_book(book)]
        sources.append(english)
        targets.append(spanish)
    return result


# The request a chat model answers with the Spanish verse (finetune_gpt's dataset
# bible_en_es and kerasllm.evaluation.chat_tasks).
TRANSLATE = "Translate this Bible verse from English to Spanish.\n\n{english}"


def as_conversations(sources, targets, source="bible_en_es"):
    """Chat examples (kerasllm.data.chat_examples.Conversation) of verse pairs: the
    user asks TRANSLATE of the English verse, the assistant answers the Spanish."""
    return [Conversation([{"role": "user", "content": TRANSLATE.format(english=english)},
                          {"role": "assistant", "content": spanish}], f"{source}:{number}")
            for number, (english, spanish) in enumerate(zip(sources, targets), start=1)]
