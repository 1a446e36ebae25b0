"""BertSpanQA: shapes, config round-trip, the span decoder, and learning a span rule."""
import numpy as np
import tensorflow as tf

from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.models import BertEncoder, registry
from kerasllm.models.bert.span_qa import BertSpanQA, best_spans, context_mask
from tests.training.helpers import run
from tests.roundtrip import config_roundtrip

FILLERS = ["the", "a", "big", "old", "king", "castle", "of", "denmark"]
ANSWERS = ["anna", "bob", "carl", "dora"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "is", "it", "?",
         *FILLERS, *ANSWERS]
SEQ = 24


def tiny_span_qa():
    encoder = BertEncoder(registry.get("bert_tiny").replace(vocab_size=len(VOCAB),
                                                           max_sequence_length=64))
    return BertSpanQA(encoder, max_answer_length=4)


def qa_examples(count=32, seed=0):
    """"who is it?" over a context of filler words holding "is <answer>" somewhere:
    the answer is the one word after "is"."""
    rng = np.random.default_rng(seed)
    tokenizer = WordPieceTokenizer(VOCAB)
    contexts = []
    for _ in range(count):
        before, after = rng.choice(FILLERS, rng.integers(0, 7)), rng.choice(FILLERS, 2)
        contexts.append(" ".join([*before, "is", rng.choice(ANSWERS), *after]))
    examples = {k: v.numpy() for k, v in tokenizer.pack(
        [tokenizer.tokenize(["who is it?"] * count), tokenizer.tokenize(contexts)],
        SEQ).items()}
    context_start = 6  # [CLS] who is it ? [SEP]
    answer = np.array([context_start + c.split().index("is") + 1 for c in contexts], "int32")
    examples["start_positions"] = examples["end_positions"] = answer
    return examples


def test_logits_shape_loss_and_config_roundtrip():
    model = tiny_span_qa()
    batch = qa_examples(count=2)
    outputs = model(batch)
    assert outputs["start_logits"].shape == outputs["end_logits"].shape == (2, SEQ)
    loss, metrics = model.compute_loss_and_metrics(batch)
    assert abs(float(loss) - np.log(SEQ)) < 1.0
    assert set(metrics) == {"start_accuracy", "end_accuracy", "exact_match"}
    clone = config_roundtrip(model)
    clone.build_for_inputs()
    assert clone.max_answer_length == 4 and clone.backbone.config == model.backbone.config
    assert clone.count_params() == model.count_params()


def test_best_spans_respects_order_length_and_context():
    start = tf.constant([[9., 0, 5, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 9]])
    end = tf.constant([[9., 0, 0, 4, 0, 6], [0, 0, 0, 0, 0, 0], [0, 0, 0, 3, 0, -9]])
    allowed = tf.constant([[False, True, True, True, True, True], [False] * 6,
                           [False, False, True, True, True, True]])
    starts, ends, scores = best_spans(start, end, allowed, max_answer_length=3)
    # Row 0: [CLS] (0) is not allowed and 2..5 is too long, so 2..3 beats 3..5.
    # Row 2: no end follows the strong start at 5, so 2..3 wins.
    assert starts.numpy().tolist() == [2, -1, 2] and ends.numpy().tolist() == [3, -1, 3]
    assert scores.numpy()[1] == 0 and 0 < scores.numpy()[0] <= 1
    # A graph-mode trace uses no Python or XLA ops.
    graph = tf.function(best_spans).get_concrete_function(
        start, end, allowed, 3).graph.as_graph_def()
    assert not {n.op for n in graph.node} & {"PyFunc", "EagerPyFunc"}
    assert not [n.op for n in graph.node if n.op.startswith("Xla")]


def test_context_mask_is_segment_one_without_sep_or_padding():
    batch = qa_examples(count=1)
    mask = context_mask(batch, sep_id=3).numpy()[0]
    ids = batch["token_ids"][0]
    assert mask.tolist() == [bool(s == 1 and t not in (0, 3))
                             for s, t in zip(batch["segment_ids"][0], ids)]
    assert mask.sum() == (batch["segment_ids"][0] == 1).sum() - 1  # the final [SEP]


def test_learns_that_the_answer_follows_is(tmp_path):
    _, logged = run(tmp_path, tiny_span_qa, examples=qa_examples(), train_steps=60,
                    global_batch_size=16, learning_rate=2e-3, warmup_steps=5, log_every=20)
    first, last = logged[0][1], logged[-1][1]
    assert last["loss"] < 0.5 * first["loss"], (first, last)
    assert last["exact_match"] > max(first["exact_match"], 0.8), (first, last)
