"""SQuAD exact match and token F1 of a span-QA model's answers to held-out questions."""
import tensorflow as tf

from kerasllm.evaluation.scores import answer_scores
from kerasllm.export.qa_signatures import qa_signatures


class AnswerEvaluator:
    """task -> {"exact_match", "f1"} (see answer_scores) of a BertSpanQA.

    The answers come from the same function the `answer` signature exports, so
    they are what a server would return: whole words of the context, from the
    input trimmed to `max_seq_length` tokens.
    """

    def __init__(self, examples, tokenizer, max_seq_length, batch_size):
        self.examples = examples
        self.tokenizer, self.max_seq_length = tokenizer, max_seq_length
        self.batch_size = batch_size
        self._model, self._answer = None, None

    def __call__(self, model):
        if model is not self._model:
            self._model = model
            self._answer = qa_signatures(model, self.tokenizer, self.max_seq_length)["answer"]
        predictions = []
        for start in range(0, len(self.examples), self.batch_size):
            batch = self.examples[start:start + self.batch_size]
            answers = self._answer(tf.constant([e.question for e in batch]),
                                   tf.constant([e.context for e in batch]))["answer"]
            predictions += [a.decode("utf-8", "replace") for a in answers.numpy()]
        return answer_scores(predictions, [e.answer for e in self.examples])
