"""The base of the BERT task models: WordPiece-packed text of at most `sequence_length`
tokens in, through the tokenizer the task carries."""
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.task import TaskModel

# Tokens per packed input by default ("[CLS] a [SEP] b [SEP]"), the trainers' too.
DEFAULT_SEQUENCE_LENGTH = 128


class BertTextTask(TaskModel):
    """A TaskModel over a BertEncoder whose raw-text inputs are packed "[CLS] a [SEP]"
    or "[CLS] a [SEP] b [SEP]", the first `sequence_length` tokens (at most the
    encoder's position table), as in its serving signatures."""

    backbone_class = BertEncoder
    default_learning_rate = 5e-5

    def __init__(self, backbone, tokenizer=None, sequence_length=DEFAULT_SEQUENCE_LENGTH,
                 **kwargs):
        super().__init__(backbone, tokenizer=tokenizer, **kwargs)
        self.sequence_length = min(int(sequence_length), backbone.config.max_sequence_length)

    def task_config(self):
        return {"sequence_length": self.sequence_length}

    def packed(self, *texts):
        """token_ids, segment_ids, padding_mask int32 [B, S'] of one or two string
        tensors [B] (segments a and b), S' the batch's longest (<= sequence_length)."""
        tokenizer = self.needs_tokenizer("fit")
        return tokenizer.pack([tokenizer.tokenize(text) for text in texts],
                              self.sequence_length, pad_to_max_length=False)
