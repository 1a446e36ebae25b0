"""BertTokenClassifier: shapes, config round-trip, and learning to tag names."""
import numpy as np

from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets
from kerasllm.models import BertEncoder, registry
from kerasllm.models.bert.token_classifier import BertTokenClassifier
from tests.training.helpers import run
from tests.roundtrip import config_roundtrip

NAMES = ["Anna", "Bob", "Carl", "Rosalind"]
OTHERS = ["met", "saw", "and", "in", "the", "park", "today", "with", "."]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Ros", "##alind",
         *NAMES[:3], *OTHERS]
O, NAME = 0, 1
SEQ = 16


def tiny_classifier():
    encoder = BertEncoder(registry.get("bert_tiny").replace(vocab_size=len(VOCAB),
                                                           max_sequence_length=64))
    return BertTokenClassifier(encoder, num_labels=2)


def tagging_examples(count=32, seed=0):
    """Sentences of random words; capitalised words are NAME, the rest O.
    Labels sit on each word's first piece ("Rosalind" is Ros ##alind)."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(NAMES + OTHERS, size=rng.integers(3, 9))) for _ in range(count)]
    tokenizer = WordPieceTokenizer(VOCAB, lowercase=False)
    aligned = tokenize_words_with_offsets(tokenizer, texts)
    examples = {k: v.numpy() for k, v in tokenizer.pack([aligned.piece_ids()], SEQ).items()}
    examples["labels"] = np.zeros((count, SEQ), "int32")
    examples["label_weights"] = np.zeros((count, SEQ), "float32")
    for row, (words, first) in enumerate(zip(aligned.words.to_list(),
                                             aligned.first_pieces().to_list())):
        for word, position in zip(words, first):
            examples["labels"][row, position + 1] = NAME if word[:1].isupper() else O
            examples["label_weights"][row, position + 1] = 1.0
    return examples


def test_logits_shape_loss_and_config_roundtrip():
    model = tiny_classifier()
    batch = tagging_examples(count=2)
    assert model(batch)["logits"].shape == (2, SEQ, 2)
    loss, metrics = model.compute_loss_and_metrics(batch)
    assert abs(float(loss) - np.log(2)) < 0.5 and set(metrics) == {"accuracy"}
    clone = config_roundtrip(model)
    clone.build_for_inputs()
    assert clone.num_labels == 2 and clone.dropout_rate == model.dropout_rate
    assert clone.backbone.config == model.backbone.config
    assert clone.count_params() == model.count_params()


def test_only_first_pieces_of_words_are_labelled():
    batch = tagging_examples(count=8)
    weighted = batch["token_ids"][batch["label_weights"] > 0]
    assert VOCAB.index("##alind") not in weighted
    assert not set(weighted) & {0, 2, 3}  # [PAD], [CLS], [SEP]
    assert set(batch["labels"][batch["token_ids"] == VOCAB.index("Ros")]) == {NAME}


def test_learns_to_tag_capitalised_words(tmp_path):
    _, logged = run(tmp_path, tiny_classifier, examples=tagging_examples(), train_steps=40,
                    global_batch_size=16, learning_rate=2e-3, warmup_steps=4, log_every=10)
    first, last = logged[0][1], logged[-1][1]
    assert last["loss"] < 0.5 * first["loss"], (first, last)
    assert last["accuracy"] > max(first["accuracy"], 0.9), (first, last)
