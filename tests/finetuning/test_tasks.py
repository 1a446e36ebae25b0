"""The fine-tuning tasks' own choices about their training examples."""
from kerasllm.data.labeled_text import LabeledExample
from kerasllm.finetuning.tasks import ClassificationTask
from kerasllm.models import BertEncoder, registry

EXAMPLES = [LabeledExample("good", 1, confidence=0.7), LabeledExample("bad", 0)]


def test_classification_trains_on_label_confidence_unless_told_not_to():
    soft = ClassificationTask(pooling="mean", dropout=0.1)
    assert soft.training_examples(EXAMPLES, None, 8) == EXAMPLES
    hard = ClassificationTask(pooling="mean", dropout=0.1, label_confidence=False)
    assert [e.confidence for e in hard.training_examples(EXAMPLES, None, 8)] == [1.0, 1.0]
    assert hard.metadata() == {"pooling": "mean", "label_confidence": False,
                               "label_smoothing": 0.0}


def test_classification_model_gets_the_label_smoothing():
    task = ClassificationTask(pooling="mean", dropout=0.1, label_smoothing=0.25)
    model = task.build_model(BertEncoder(registry.get("bert_tiny")), ["neg", "pos"])
    assert model.label_smoothing == 0.25 and task.metadata()["label_smoothing"] == 0.25
