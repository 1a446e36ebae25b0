"""The teacher of a distilled classifier: a classifier's SavedModel export (what
finetune_bert writes), scored once over the training examples, whose scores then
ride along in the training batches (see kerasllm.models.bert.distillation).

    teacher = ClassifierTeacher("saved_models/minilm_rt_sentences")
    examples = teacher.label(examples, batch_size=64)   # each with its teacher_logits

The export's own graph runs, the one TF Serving serves, so the teacher is exactly
the model that was served and scored (its best or averaged weights), and it
tokenizes the text its own way.
"""
import json
import os

import numpy as np

from kerasllm.export.loaded import ExportNotFoundError, LoadedExport
from kerasllm.export.saved_model import METADATA_FILE
from kerasllm.models.bert.distillation import DistillationError
from kerasllm.pretrained import load_pretrained

# The signatures of kerasllm.export.classifier_signatures.
CLASSIFY, CLASSIFY_PAIR = "classify", "classify_pair"
# log(0) would make a teacher logit -inf; the least normal float32 keeps it finite,
# and a class that unlikely contributes nothing to the soft targets either way.
_LEAST_PROBABILITY = np.finfo(np.float32).tiny


class ClassifierTeacher:
    """A classifier export (an export root, its newest version, or a version
    directory) with kerasllm's metadata.

    Attributes:
      path: the version directory.
      label_names: its labels in class-id order.
      metadata: its assets.extra/kerasllm.json.

    Raises (constructor):
      DistillationError: no export at `path`, no classify signature, or no
        label names in its metadata.
    """

    def __init__(self, path):
        try:
            self._export = LoadedExport(path)
        except ExportNotFoundError as error:
            raise DistillationError(f"no teacher export at {path}: {error}") from None
        self.path = self._export.path
        signatures = set(self._export.signatures)
        if not {CLASSIFY, CLASSIFY_PAIR} <= signatures:
            raise DistillationError(
                f"{self.path} is not a classifier export (its signatures: "
                f"{', '.join(sorted(signatures))}); the teacher must be a text classifier, "
                "e.g. an export of finetune_bert --task=classify")
        try:
            with open(os.path.join(self.path, METADATA_FILE)) as f:
                self.metadata = json.load(f)
            self.label_names = tuple(self.metadata["label_names"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DistillationError(f"{self.path} has no kerasllm metadata naming its labels "
                                    f"({error}); export the teacher with a kerasllm trainer"
                                    ) from None

    def check_labels(self, label_names):
        """Raises DistillationError unless the data's `label_names` are the teacher's,
        in the same order: class i must mean the same to both."""
        if tuple(label_names) != self.label_names:
            raise DistillationError(
                f"the teacher {self.path} classifies into {len(self.label_names)} labels "
                f"({', '.join(self.label_names)}), the data has {len(label_names)} "
                f"({', '.join(label_names)}); distil on data labelled as the teacher was "
                "trained (--labels sets their order)")

    @property
    def tokenizer_source(self):
        """The preset whose tokenizer the teacher reads text with, as its metadata
        records it (tokenizer_source; in a finetune_bert export, the
        init_checkpoint), or None."""
        return self.metadata.get("tokenizer_source") or self.metadata.get("init_checkpoint")

    def tokenizer(self):
        """The teacher's tokenizer, rebuilt from tokenizer_source and checked against
        the export's tokenizer fingerprint.

        Raises:
          DistillationError: the metadata names no source, or the source's tokenizer
            is not the one in the export.
          kerasllm.errors.KerasLLMError: the source cannot be loaded.
        """
        if not self.tokenizer_source:
            raise DistillationError(f"{self.path} does not record where its tokenizer comes "
                                    "from; give the student an init checkpoint, which brings "
                                    "its own")
        tokenizer = load_pretrained(self.tokenizer_source)[1]
        if tokenizer.fingerprint() != self.metadata.get("tokenizer_sha256"):
            raise DistillationError(
                f"the tokenizer of {self.tokenizer_source} is not the one {self.path} was "
                "exported with (their fingerprints differ); give the student an init "
                "checkpoint, which brings its own")
        return tokenizer

    def logits(self, texts, texts_b=None, batch_size=64):
        """float32 [n, num_labels]: the teacher's log-probabilities of `texts` (a list
        of strings), or of the pairs (texts, texts_b) (an empty text_b: a single
        text), `batch_size` texts a call, shortest first so a batch pads little."""
        order = np.argsort([len(text) for text in texts], kind="stable")
        logits = np.empty((len(texts), len(self.label_names)), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            inputs = {"text": [texts[row] for row in rows]}
            if texts_b is not None:
                inputs["text_b"] = [texts_b[row] for row in rows]
            probabilities = self._export.call(CLASSIFY_PAIR if texts_b is not None
                                              else CLASSIFY, **inputs)["probabilities"]
            logits[rows] = np.log(np.maximum(probabilities, _LEAST_PROBABILITY))
        return logits

    def label(self, examples, batch_size=64):
        """`examples` (LabeledExamples) with teacher_logits set to the teacher's."""
        has_pairs = any(example.text_b for example in examples)
        logits = self.logits([example.text for example in examples],
                             [example.text_b for example in examples] if has_pairs else None,
                             batch_size)
        return [example._replace(teacher_logits=row)
                for example, row in zip(examples, logits)]
