"""The one reader of GGUF files (llama.cpp's format) in kerasllm: every GGUF caller (the
Llama weights in gguf_llama, the tokenizer in gguf_tokenizer, the chat template)
reads an open `GgufFile`, so each file is checked, and parsed, once.

A GGUF file is a header ("GGUF", version, counts), metadata keys with typed values
("llama.block_count", "tokenizer.ggml.tokens", ...), tensor descriptions, then the
tensors' data, each in a ggml type: plain (F32, F16, BF16) or block-quantised (Q8_0,
Q4_1, ...: blocks of 32 numbers sharing a scale). The gguf package parses it and
dequantises each tensor to float32 NumPy; this module turns what goes wrong on the
way (a missing file, another format, an unknown version, a file cut short) into one
ConversionError naming the path.
"""
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.gguf_reader import READER_SUPPORTED_VERSIONS
from gguf.quants import dequantize

from kerasllm.convert.checkpoint_mapping import listing
from kerasllm.convert.errors import ConversionError

GGUF_MAGIC = b"GGUF"
# The ggml types `float32_tensors` dequantises (with the gguf package), each checked
# by a test against gguf's own quantiser.
SUPPORTED_TYPES = tuple(GGMLQuantizationType[name] for name in (
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"))
# What the gguf package raises on a file that ends early or holds nonsense counts:
# a short read fails as a reshape (ValueError), an empty read as an index
# (IndexError), a repeated name as a KeyError, an impossible type as a ValueError.
_DAMAGED = (ValueError, IndexError, KeyError, TypeError, OverflowError)


class GgufFile:
    """An open, fully parsed GGUF file: its metadata and tensor descriptions.

    Args:
      path: the .gguf file.

    Raises:
      ConversionError: the file is missing, is not GGUF, is of a version the gguf
        package cannot read, or is not a complete GGUF file (cut short or damaged).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ConversionError(f"{self.path!r} does not exist or is not a file; expected a "
                                  "GGUF model file.")
        with open(self.path, "rb") as f:
            header = f.read(8)
        if header[:4] != GGUF_MAGIC:
            raise ConversionError(f"{self.path} is not a GGUF file: it starts with "
                                  f"{header[:4]!r}, not {GGUF_MAGIC!r}.")
        version = int.from_bytes(header[4:], "little")
        if version & 0xFFFF == 0:  # written on a machine of the other byte order
            version = int.from_bytes(header[4:], "big")
        if len(header) == 8 and version not in READER_SUPPORTED_VERSIONS:
            raise ConversionError(f"{self.path} is GGUF version {version}; versions "
                                  f"{', '.join(map(str, READER_SUPPORTED_VERSIONS))} can be "
                                  "read.")
        try:
            reader = GGUFReader(self.path)
        except _DAMAGED as error:
            raise ConversionError(
                f"{self.path} is not a complete GGUF file ({os.path.getsize(self.path):,} "
                "bytes): its metadata or tensor data is cut short or damaged; copy or "
                "download it again.") from error
        self.fields = reader.fields
        self.tensors = reader.tensors

    @classmethod
    def of(cls, source):
        """`source` if it is an open GgufFile, else the GgufFile at that path."""
        return source if isinstance(source, cls) else cls(source)

    def check_architecture(self, architecture, required_keys):
        """Returns the metadata prefix "<architecture>." once the file is of
        `architecture` with every "<architecture>.<key>" of `required_keys`.

        Raises:
          ConversionError: no general.architecture, another one, or missing keys.
        """
        found = self.scalar("general.architecture")
        if found is None:
            raise ConversionError(f"{self.path} has no general.architecture in its metadata.")
        if found != architecture:
            raise ConversionError(f"{self.path} holds a {found!r} model; only the "
                                  f"{architecture!r} architecture can be converted.")
        prefix = architecture + "."
        missing = [prefix + key for key in required_keys if prefix + key not in self]
        if missing:
            raise ConversionError(f"{self.path} lacks the metadata keys {', '.join(missing)}.")
        return prefix

    def __contains__(self, key):
        return key in self.fields

    def value(self, key, default=None):
        """The value of metadata `key` as the gguf package reads it (a str, a number,
        or a list for an array), `default` if absent."""
        field = self.fields.get(key)
        return default if field is None else field.contents()

    def scalar(self, key, default=None):
        """The value of a single-valued key (strings included), `default` if absent.
        Whole numbers come back as int; FLOAT32 values as the shortest decimal that
        rounds to them (so a stored 1e-5 reads 1e-5, not 9.99999974e-06).

        Raises:
          ConversionError: the key holds an array.
        """
        field = self.fields.get(key)
        if field is None:
            return default
        if len(field.types) != 1:
            raise ConversionError(f"{self.path}: metadata {key} is an array (one value per "
                                  "layer?); only a single value for every layer is supported.")
        value = field.contents()
        if field.types[0] == GGUFValueType.FLOAT32:
            return float(str(np.float32(value)))
        return value

    def array_length(self, key):
        """The number of elements of an array key, None if absent."""
        field = self.fields.get(key)
        return None if field is None else len(field.data)

    def float32_tensors(self):
        """{name: (name, float32 array in NumPy order)} of every tensor, dequantised.
        ggml lists a tensor's dimensions fastest-varying first, so a tensor's `shape`
        [in, out] is the array [out, in].

        Raises:
          ConversionError: a tensor's ggml type is not in SUPPORTED_TYPES.
        """
        unsupported = [f"{t.name} ({t.tensor_type.name})" for t in self.tensors
                       if t.tensor_type not in SUPPORTED_TYPES]
        if unsupported:
            raise ConversionError(
                f"{self.path} has tensors of unsupported types: {listing(unsupported)}; "
                f"supported: {', '.join(t.name for t in SUPPORTED_TYPES)}.")
        tensors = {}
        for t in self.tensors:
            array = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)
            expected = tuple(int(n) for n in reversed(t.shape))
            if array.shape != expected:  # the reader's order, checked rather than assumed
                raise ConversionError(f"{self.path}: tensor {t.name} dequantises to "
                                      f"{array.shape}, not its declared {expected}.")
            tensors[t.name] = (t.name, array)
        return tensors
