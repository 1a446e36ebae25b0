"""lm-eval (the `lm_eval` extra) against the OpenAI-compatible gateway, in front of the
development server running a tiny GPT export, on kerasllm's task files: its numbers
equal the export's own scores computed in-process."""
import math

import keras
import numpy as np
import pytest

pytest.importorskip("lm_eval", reason="lm-eval is not installed: pip install -e "
                                      "'.[lm-eval]' (lm-eval[api]==0.4.13)")

import kerasllm.export  # noqa: E402
from kerasllm.data.labeled_text import LabeledExample  # noqa: E402
from kerasllm.evaluation import lm_eval_tasks  # noqa: E402
from kerasllm.evaluation.lm_eval import evaluate  # noqa: E402
from kerasllm.export.gpt_signatures import gpt_signatures  # noqa: E402
from kerasllm.export.gpt_signatures import warmup_inputs  # noqa: E402
from kerasllm.export.saved_model import export_saved_model  # noqa: E402
from kerasllm.models import GptCausalLM  # noqa: E402
from kerasllm.serving.dev_server import DevServer  # noqa: E402
from kerasllm.serving.gateway import Gateway, Serving  # noqa: E402
from kerasllm.tokenizers import train_sentencepiece  # noqa: E402
from tests.serving.running_gateway import RunningGateway  # noqa: E402

MAX_PROMPT, MAX_NEW = 120, 8
WORDS = ["a", "good", "bad", "film", "fine", "dull", "story", "the", "cast", "is", "and",
         "not", "funny", "long", "moving", "mess", "warm", "clever", "slow", "plot"]
# 20 made-up reviews (label = index parity), so no dataset is fetched.
RT = [LabeledExample(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)]
                              for j in range(4 + i % 5)) + ("!" if i % 3 else "."), i % 2)
      for i in range(20)]
PLAYS = [["To be, or not to be, that is the question:",
          "Whether 'tis nobler in the mind to suffer"],
         ["Now is the winter of our discontent", "Made glorious summer by this sun of York;",
          "And all the clouds that lour'd upon our house"],
         ["Friends, Romans, countrymen, lend me your ears;"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(the gateway's /v1 URL, the export loaded in-process)."""
    root = tmp_path_factory.mktemp("saved_models")
    keras.utils.set_random_seed(0)
    lines = [e.text for e in RT] + [line for play in PLAYS for line in play]
    pieces = train_sentencepiece(lines * 20, vocab_size=340)
    gpt = GptCausalLM.from_name("gpt_tiny", vocab_size=pieces.vocab_size).build_for_inputs()
    path = export_saved_model(
        str(root / "gpt"), gpt_signatures(gpt, pieces, max_prompt_length=MAX_PROMPT,
                                          max_new_tokens=MAX_NEW),
        [gpt, pieces], check=False, warmup_inputs=warmup_inputs())
    with DevServer(str(root)) as server:
        gateway = RunningGateway(Gateway(Serving(server.rest_url), models=["gpt"]))
        yield gateway.url, kerasllm.export.load(path)
        gateway.stop()


@pytest.fixture(scope="module")
def results(served, tmp_path_factory):
    tasks_dir = lm_eval_tasks.write_tasks(tmp_path_factory.mktemp("tasks"), RT, PLAYS)
    return evaluate(served[0], "gpt", lm_eval_tasks.TASKS, tasks_dir,
                    max_length=MAX_PROMPT + MAX_NEW, log_samples=True)


def in_process_log_probability(export, texts):
    return np.asarray(export.score(text=list(texts))["log_probability"], np.float64)


def test_rt_accuracy_and_choice_scores_equal_the_exports(served, results):
    export = served[1]
    contexts = [lm_eval_tasks.rt_prompt(e.text) for e in RT]
    # A choice's log-likelihood: log p(context + choice) - log p(context), the export's
    # own score (it puts <s> first and scores every token after it).
    context_scores = in_process_log_probability(export, contexts)
    choice_scores = np.stack([
        in_process_log_probability(export, [c + choice for c in contexts]) - context_scores
        for choice in lm_eval_tasks.RT_CHOICES], axis=1)
    accuracy = float(np.mean(np.argmax(choice_scores, axis=1) == [e.label for e in RT]))
    assert results["results"]["kerasllm_rt"]["acc,none"] == pytest.approx(accuracy)

    samples = sorted(results["samples"]["kerasllm_rt"], key=lambda s: s["doc_id"])
    assert len(samples) == len(RT)
    lm_eval_scores = np.asarray([[r[0][0] for r in s["resps"]] for s in samples])
    np.testing.assert_allclose(lm_eval_scores, choice_scores, atol=1e-3)


def test_shakespeare_loglikelihood_equals_the_exports(served, results):
    texts = ["\n".join(play) for play in PLAYS]
    expected = in_process_log_probability(served[1], texts)
    samples = sorted(results["samples"]["kerasllm_shakespeare"], key=lambda s: s["doc_id"])
    np.testing.assert_allclose([s["resps"][0][0] for s in samples], expected, atol=1e-3)

    words = sum(len(t.split()) for t in texts)
    scores = results["results"]["kerasllm_shakespeare"]
    assert scores["word_perplexity,none"] == pytest.approx(
        math.exp(-expected.sum() / words), rel=1e-4)
    assert scores["bits_per_byte,none"] == pytest.approx(
        -expected.sum() / sum(len(t.encode()) for t in texts) / math.log(2), rel=1e-4)
