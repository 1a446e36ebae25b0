"""Chat and instruction files: reading, their "path:line:" errors, reply-only target
masks, truncation from the prompt side, and the batches."""
import json

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.chat_examples import (ChatDataError, Conversation, chat_dataset,
                                         chat_dataset_fn, read_conversations,
                                         tokenize_conversations)
from kerasllm.data.chat_template import DEFAULT_CHATML, ChatTemplate
from tests.data.test_chat_template import tiny_sentencepiece

BOS, EOS = 2, 3


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_sentencepiece()


@pytest.fixture(scope="module")
def template(tokenizer):
    return ChatTemplate.for_model(None, tokenizer)  # the plain default, eos "</s>"


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(path)


def jsonl(records):
    return "".join(json.dumps(record) + "\n" for record in records)


def user(content):
    return {"role": "user", "content": content}


def assistant(content):
    return {"role": "assistant", "content": content}


def ids(tokenizer, text):
    return tokenizer.tokenize([text])[0].numpy().tolist()


def test_read_chats_instructions_and_tsv(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, user("hi"), assistant("hello")]
    path = write(tmp_path, "a.jsonl", "\ufeff" + jsonl([
        {"messages": chat, "id": 7}, {"prompt": "the king", "response": "of the land"}]))
    assert read_conversations(path) == [
        Conversation(chat, f"{path}:1"),
        Conversation([user("the king"), assistant("of the land")], f"{path}:2")]
    tsv = write(tmp_path, "a.TSV", "category\tresponse\tprompt\nx\tof the land\tthe king\n")
    assert read_conversations(tsv) == [
        Conversation([user("the king"), assistant("of the land")], f"{tsv}:2")]


@pytest.mark.parametrize("name, content, message", [
    ("a.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "a", \n', r"2: bad JSON"),
    ("a.jsonl", jsonl([{"messages": [user("a"), {"role": "bot", "content": "b"}]}]),
     r"1: message 2 has role 'bot'; use one of system, user, assistant"),
    ("a.jsonl", jsonl([{"messages": [user(["a"]), assistant("b")]}]),
     r"1: message 1's content must be a string, got list"),
    ("a.jsonl", jsonl([{"messages": [user("a")]}]), r"1: no assistant message"),
    ("a.jsonl", jsonl([{"messages": [user("a"), assistant(" ")]}]),
     r"1: message 2 \(assistant\) is empty"),
    ("a.jsonl", jsonl([{"messages": [user("a"), assistant("b"), user("c")]}]),
     r"1: the conversation ends with a user message"),
    ("a.jsonl", jsonl([{"messages": []}]), r"1: 'messages' must be a non-empty list"),
    ("a.jsonl", jsonl([{"prompt": "a", "response": "b"}, {"prompt": "a", "response": ""}]),
     r"2: empty response"),
    ("a.jsonl", jsonl([{"prompt": "a"}]), r"1: missing field\(s\) response"),
    ("a.jsonl", jsonl([{"prompt": "a", "response": 3}]),
     r"1: field 'response' must be a string, got int"),
    ("a.jsonl", jsonl([{"text": "a"}]), r"1: needs 'messages' \(a chat\) or 'prompt'"),
    ("a.jsonl", jsonl([{"messages": [user("a"), assistant("b")], "prompt": "a"}]),
     r"1: has both 'messages' and 'prompt'/'response'"),
    ("a.tsv", "prompt\tanswer\na\tb\n", r"1: the header must name the columns 'prompt' and "
                                        r"'response'"),
    ("a.tsv", "prompt\tresponse\na\tb\na\t\n", r"3: empty response"),
    ("a.tsv", "prompt\tresponse\na\tb\tc\n", r"2: 3 columns, but the header has 2"),
    ("a.tsv", "", r"1: empty file"),
    ("a.tsv", "prompt\tresponse\n", r"1: no examples"),
    ("a.jsonl", "", r"1: no examples"),
    ("a.jsonl", (jsonl([{"prompt": "a", "response": "b"}]) * 3).encode() + b'{"prompt": "\xff"}',
     r"4: not UTF-8 text"),
    ("a.json", "{}", r"1: unknown format '.json'"),
])
def test_bad_input_names_path_and_line(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(ChatDataError, match="^" + path + ":" + message):
        read_conversations(path)


def test_target_mask_is_exactly_the_replies_and_their_eos(tokenizer, template):
    conversation = Conversation([user("the king"), assistant("of the land"),
                                 user("the dog"), assistant("is old")], "a.jsonl:1")
    examples, stats = tokenize_conversations([conversation], template, tokenizer, 256)
    # "User: the king\n\nAssistant: of the land</s>\n\nUser: the dog\n\nAssistant: is old</s>"
    prompt_1 = ids(tokenizer, "User: the king\n\nAssistant:")
    reply_1 = ids(tokenizer, " of the land") + [EOS]
    prompt_2 = ids(tokenizer, "\n\nUser: the dog\n\nAssistant:")
    reply_2 = ids(tokenizer, " is old") + [EOS]
    assert examples.columns["token_ids"].to_list() == [
        [BOS] + prompt_1 + reply_1 + prompt_2 + reply_2]
    mask = examples.columns["target_mask"][0].numpy()
    targets = np.flatnonzero(mask).tolist()
    first = 1 + len(prompt_1)
    second = first + len(reply_1) + len(prompt_2)
    assert targets == [*range(first, first + len(reply_1)),
                       *range(second, second + len(reply_2))]
    assert stats == {"examples": 1, "truncated": 0, "tokens": len(mask),
                     "target_tokens": len(reply_1) + len(reply_2)}
    assert examples.columns["segment_ids"].to_list() == [[0] * len(mask)]


def test_truncation_drops_prompt_tokens_after_the_bos(tokenizer, template):
    long_prompt = Conversation([user("the king of the land is far away " * 4),
                                assistant("near")], "a.jsonl:2")
    short = Conversation([user("the dog"), assistant("old")], "a.jsonl:3")
    full, _ = tokenize_conversations([long_prompt, short], template, tokenizer, 1000)
    full_ids, short_ids = full.columns["token_ids"].to_list()
    full_mask = full.columns["target_mask"][0].numpy().tolist()
    length = len(short_ids)
    assert len(full_ids) > length
    examples, stats = tokenize_conversations([long_prompt, short], template, tokenizer, length)
    assert examples.columns["token_ids"].to_list() == [[BOS] + full_ids[1 - length:], short_ids]
    assert examples.columns["target_mask"][0].numpy().tolist() == [0] + full_mask[1 - length:]
    assert (stats["examples"], stats["truncated"]) == (2, 1)
    reply = sum(full_mask)
    with pytest.raises(ChatDataError, match=rf"^a\.jsonl:2: the response alone is {reply} "
                                            rf"tokens \(\+1 bos\), more than "
                                            rf"--max_seq_length={reply}"):
        tokenize_conversations([long_prompt], template, tokenizer, reply)


def test_a_template_that_writes_the_bos_gets_no_second_one(tokenizer):
    template = ChatTemplate("{{ bos_token }}" + DEFAULT_CHATML, bos_token="<s>")
    examples, _ = tokenize_conversations([Conversation([user("a"), assistant("b")], "c:1")],
                                         template, tokenizer, 64)
    token_ids = examples.columns["token_ids"][0].numpy().tolist()
    assert token_ids[0] == BOS and BOS not in token_ids[1:]


def test_a_template_failure_names_the_conversation(tokenizer):
    template = ChatTemplate("{{ raise_exception('one message at most') }}")
    with pytest.raises(ChatDataError, match=r"^b\.tsv:4: the chat template raised: one "):
        tokenize_conversations([Conversation([user("a"), assistant("b")], "b.tsv:4")],
                               template, tokenizer, 16)


@pytest.fixture(scope="module")
def examples(tokenizer, template):
    words = "the king queen dog cat of land castle town is far away near old".split()
    rng = np.random.default_rng(0)
    conversations = [Conversation([user(" ".join(rng.choice(words, rng.integers(1, 12)))),
                                   assistant(" ".join(rng.choice(words, rng.integers(1, 6))))],
                                  f"a.jsonl:{line}") for line in range(1, 41)]
    return tokenize_conversations(conversations, template, tokenizer, 32)


def test_batches_are_reproducible_and_masks_line_up(tokenizer, examples):
    examples, stats = examples
    settings = dict(pad_id=tokenizer.pad_id, max_seq_length=32, batch_size=4, seed=3,
                    length_multiple=2)
    stream = list(chat_dataset(examples, training=True, **settings).take(6))
    resumed = next(iter(chat_dataset(examples, training=True, start_batch=5, **settings)))
    for batch in stream:
        assert set(batch) == {"token_ids", "padding_mask", "target_mask"}
        assert batch["token_ids"].shape == batch["padding_mask"].shape == \
            batch["target_mask"].shape
        assert batch["token_ids"].shape[1] <= 32
        # Targets are real tokens; padding is the pad id.
        assert tf.reduce_all(batch["target_mask"] <= batch["padding_mask"])
        assert tf.reduce_all((batch["padding_mask"] == 1) | (batch["token_ids"] == 0))
    for name in stream[5]:
        np.testing.assert_array_equal(stream[5][name], resumed[name])
    evaluation = list(chat_dataset(examples, training=False, **settings))
    assert sum(int(tf.reduce_sum(batch["target_mask"])) for batch in evaluation) == \
        stats["target_tokens"]
    assert sum(int(tf.reduce_sum(batch["padding_mask"])) for batch in evaluation) == \
        stats["tokens"]


def test_dataset_fn_gives_each_pipeline_its_share(tokenizer, examples):
    dataset_fn = chat_dataset_fn(examples[0], pad_id=tokenizer.pad_id, max_seq_length=32,
                                 global_batch_size=8, seed=1)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batch = next(iter(dataset_fn(context, start_batch=2)))
    assert batch["token_ids"].shape[0] == 4
    assert batch["target_mask"].shape == batch["token_ids"].shape
