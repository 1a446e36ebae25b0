"""GPT-2's pre-tokenization (text -> the pieces BPE merges within) in RE2 / TF ops.

GPT-2 splits text with the regular expression

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

matched leftmost-first from the start of the text, so a word keeps the one space
before it (" world") and a run of whitespace leaves its last space to the word
that follows ("a   b" -> "a", "  ", " b"). RE2, the regex engine of TensorFlow,
has no lookahead, so `\\s+(?!\\S)` cannot be written. What it does is this: a
whitespace run followed by more text stops one character short of its end, and
matching starts again at that last whitespace character, which then joins the
next word if it is a space or stands alone otherwise; a run that reaches the end
of the text is one piece.

The workaround has two regex passes, both `tf.strings.regex_replace`:
  1. in every whitespace run of two or more characters followed by a
     non-whitespace character, a boundary mark is put before the run's last
     character. The mark is the byte 0xFF, which never occurs in UTF-8 text
     (input is made valid UTF-8 first), and which no pattern below matches;
  2. the pattern above without the lookahead alternative appends a mark after
     every match. Its `\\s+` stops at a mark, which is exactly where
     `\\s+(?!\\S)` stops; the mark matches nothing and is skipped, so matching
     resumes at the run's last character, as in GPT-2. The pattern looks neither
     ahead nor behind, so every other match is GPT-2's too. Splitting at the
     marks and dropping empty strings gives the pieces.
`tf_text.regex_split` is not used: it stops reading a string at a NUL byte.

Hugging Face `tokenizers` (the reference) runs the expression with Oniguruma,
whose Unicode tables are newer than RE2's in TensorFlow: its \\s is Unicode's
White_Space (RE2's is ASCII only), and the letters and numbers added in Unicode
16 are spelled out below so the classes agree on every code point (checked
against tokenizers 0.23.3 for all 1,112,064 of them).

Pre-tokenizer kinds (kerasllm.convert.gguf_tokenizer maps llama.cpp's
`tokenizer.ggml.pre` names to them):
  "gpt2":   the expression above (GPT-2; llama.cpp's "gpt-2").
  "smollm": every numeric character is first split off on its own, then each
            part goes through the expression separately (Hugging Face's
            Sequence[Digits(individual_digits=True), ByteLevel], the tokenizer
            of SmolLM, SmolLM2, StarCoder and Refact), so "in 2024" -> "in", " ",
            "2", "0", "2", "4": a number never takes the space before it.
Special tokens (e.g. "<|im_start|>") are split off first, longest first where
two start at the same place, and the text between them is pre-tokenized as if
each part were a whole text, as Hugging Face does with its added tokens.
"""
import tensorflow as tf

from kerasllm.errors import DataError

PRETOKENIZERS = ("gpt2", "smollm")

# The mark put between pieces; 0xFF cannot occur in UTF-8.
_MARK = b"\xff"


def _ranges(pairs):
    return "".join(rf"\x{{{first:X}}}-\x{{{last:X}}}" for first, last in pairs)


# Unicode's White_Space, which is Oniguruma's \s (RE2's \s is [\t\n\f\r ]).
_SPACE = (r"\t\n\x{0B}\x{0C}\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}"
          r"\x{202F}\x{205F}\x{3000}")
# Letters and numbers new in Unicode 16, which Oniguruma knows and RE2 does not.
_LETTER = r"\p{L}" + _ranges([
    (0x1C89, 0x1C8A), (0xA7CB, 0xA7CD), (0xA7DA, 0xA7DC), (0x105C0, 0x105F3),
    (0x10D4A, 0x10D65), (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x11380, 0x11389),
    (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7),
    (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11BC0, 0x11BE0), (0x13460, 0x143FA),
    (0x16100, 0x1611D), (0x16D40, 0x16D6C), (0x18CFF, 0x18CFF), (0x1E5D0, 0x1E5ED),
    (0x1E5F0, 0x1E5F0), (0x2EBF0, 0x2EE5D)])
_NUMBER = r"\p{N}" + _ranges([
    (0x10D40, 0x10D49), (0x116D0, 0x116E3), (0x11BF0, 0x11BF9), (0x16130, 0x16139),
    (0x16D70, 0x16D79), (0x1CCF0, 0x1CCF9), (0x1E5F1, 0x1E5FA)])
# Hugging Face's Digits splits at Rust's char::is_numeric, whose tables (Unicode 17)
# add these numbers to Oniguruma's.
_DIGIT = _NUMBER + _ranges([(0x11DE0, 0x11DE9), (0x16FF4, 0x16FF6)])

# GPT-2's expression without its lookahead alternative (see the module docstring).
_PIECE = (rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{_LETTER}]+| ?[{_NUMBER}]+"
          rf"| ?[^{_SPACE}{_LETTER}{_NUMBER}]+|[{_SPACE}]+")
# A whitespace run followed by a non-whitespace character, captured as
# (all but its last character)(its last character and the next one).
_RUN_BEFORE_TEXT = rf"([{_SPACE}]+)([{_SPACE}][^{_SPACE}])"


def _literal(text):
    """An RE2 pattern matching exactly `text` (every character hex-escaped)."""
    return "".join(rf"\x{{{ord(char):X}}}" for char in text)


def isolation_pattern(kind, special_tokens):
    """The RE2 pattern of what is split off before the expression runs: the
    special tokens (longest first) and, for "smollm", single numeric characters;
    None when there is nothing to split off."""
    if kind not in PRETOKENIZERS:
        raise DataError(f"unknown pre-tokenizer {kind!r}; known: {', '.join(PRETOKENIZERS)}")
    alternatives = [_literal(token) for token in sorted(set(special_tokens), key=len,
                                                        reverse=True)]
    if kind == "smollm":
        alternatives.append(f"[{_DIGIT}]")
    return "|".join(alternatives) or None


def _split_at_marks(marked):
    """string [n] with marks -> string [n, (parts)]: the non-empty parts between marks."""
    parts = tf.strings.split(marked, sep=_MARK)
    return tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0)


def pretokenize(text, isolate=None):
    """string [batch] -> string RaggedTensor [batch, (pieces)].

    The pieces concatenate to the text (after invalid UTF-8 is replaced by U+FFFD);
    each match of `isolate` (see isolation_pattern) is a piece of its own, the
    rest is split by GPT-2's expression, each stretch between two isolated pieces
    on its own. "" gives no pieces.
    """
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)
    if isolate is None:
        segments = tf.RaggedTensor.from_tensor(tf.expand_dims(text, 1))
    else:
        segments = _split_at_marks(
            tf.strings.regex_replace(text, isolate, _MARK + rb"\0" + _MARK))
    marked = tf.strings.regex_replace(segments.flat_values, _RUN_BEFORE_TEXT,
                                      rb"\1" + _MARK + rb"\2")
    marked = tf.strings.regex_replace(marked, _PIECE, rb"\0" + _MARK)
    if isolate is not None:
        # Isolated segments (special tokens, digits) stay whole. No other segment
        # matches `isolate` in full: every match was split off above.
        isolated = tf.strings.regex_full_match(segments.flat_values, isolate)
        marked = tf.where(isolated, segments.flat_values, marked)
    return segments.with_flat_values(_split_at_marks(marked)).merge_dims(1, 2)
