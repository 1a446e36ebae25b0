"""Chat templates: SmolLM2's own and the two defaults rendered, cut into turns, framing
one user message; rendered text tokenized with its special tokens."""
import pytest

from kerasllm.convert.gguf_tokenizer import byte_bpe_from_gguf, chat_template
from kerasllm.convert.smollm2 import smollm2_gguf_path
from kerasllm.data.chat_template import (DEFAULT_CHATML, DEFAULT_PLAIN, ChatTemplate,
                                         ChatTemplateError, tokenize_rendered)
from kerasllm.tokenizers.sentencepiece import train_sentencepiece

SMOLLM_SYSTEM = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                 "Hugging Face<|im_end|>\n")
CHAT = [{"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Spain?"},
        {"role": "assistant", "content": "Madrid."}]
SYSTEM = {"role": "system", "content": "Answer in one word."}


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct's tokenizer and template, read from its GGUF file's metadata
    (what load_preset("smollm2") reads, without building the model)."""
    path = smollm2_gguf_path()
    return byte_bpe_from_gguf(path), chat_template(path)


def tiny_sentencepiece():
    """A SentencePiece tokenizer of 280 pieces (<s> 2, </s> 3), no chat tokens."""
    lines = [f"the {a} of the {b} is {c}" for a in ("king", "queen", "dog", "cat")
             for b in ("land", "castle", "town") for c in ("far away", "near", "old")] * 8
    return train_sentencepiece(lines, vocab_size=280)


@pytest.fixture(scope="module")
def sentencepiece():
    return tiny_sentencepiece()


def test_smollm2_template_renders_its_reference_text(smollm2):
    template = ChatTemplate.for_model(smollm2[1], smollm2[0])
    conversation = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                    "<|im_start|>assistant\nParis.<|im_end|>\n"
                    "<|im_start|>user\nAnd of Spain?<|im_end|>\n"
                    "<|im_start|>assistant\nMadrid.<|im_end|>\n")
    assert template.render(CHAT) == SMOLLM_SYSTEM + conversation
    assert template.render([SYSTEM, *CHAT], add_generation_prompt=True) == (
        "<|im_start|>system\nAnswer in one word.<|im_end|>\n" + conversation
        + "<|im_start|>assistant\n")
    assert (template.bos_token, template.eos_token) == (None, "<|im_end|>")


def test_smollm2_turns_frame_and_special_tokens(smollm2):
    tokenizer, source = smollm2
    template = ChatTemplate.for_model(source, tokenizer)
    pieces = template.turns(CHAT)
    assert "".join(text for text, _ in pieces) == template.render(CHAT)
    assert [text for text, reply in pieces if reply] == ["Paris.<|im_end|>\n",
                                                         "Madrid.<|im_end|>\n"]
    assert [reply for _, reply in pieces] == [False, True, False, True]
    assert template.user_message_frame() == (SMOLLM_SYSTEM + "<|im_start|>user\n",
                                             "<|im_end|>\n<|im_start|>assistant\n")
    text = template.render([SYSTEM, *CHAT], add_generation_prompt=True)
    assert tokenize_rendered(tokenizer, text) == tokenizer.tokenize([text])[0].numpy().tolist()
    assert ChatTemplate.for_model(None, tokenizer).source == DEFAULT_CHATML


def test_default_chatml():
    template = ChatTemplate(DEFAULT_CHATML)
    assert template.render([SYSTEM, *CHAT[:2]], add_generation_prompt=True) == (
        "<|im_start|>system\nAnswer in one word.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n<|im_start|>assistant\n")
    assert template.user_message_frame() == ("<|im_start|>user\n",
                                             "<|im_end|>\n<|im_start|>assistant\n")
    assert [text for text, reply in template.turns(CHAT) if reply] == [
        "Paris.<|im_end|>\n", "Madrid.<|im_end|>\n"]


def test_default_plain_for_a_tokenizer_without_chat_tokens(sentencepiece):
    template = ChatTemplate.for_model(None, sentencepiece)
    assert (template.source, template.bos_token, template.eos_token) == (DEFAULT_PLAIN, "<s>",
                                                                          "</s>")
    assert template.render([SYSTEM, *CHAT], add_generation_prompt=True) == (
        "System: Answer in one word.\n\nUser: What is the capital of France?\n\n"
        "Assistant: Paris.</s>\n\nUser: And of Spain?\n\nAssistant: Madrid.</s>\n\n"
        "Assistant:")
    assert template.turns(CHAT) == [
        ("User: What is the capital of France?\n\nAssistant:", False), (" Paris.</s>", True),
        ("\n\nUser: And of Spain?\n\nAssistant:", False), (" Madrid.</s>", True)]
    assert template.user_message_frame() == ("User: ", "\n\nAssistant:")
    # Without an eos the variable is undefined and writes nothing (not "None").
    assert ChatTemplate(DEFAULT_PLAIN).render(CHAT[:2]) == (
        "User: What is the capital of France?\n\nAssistant: Paris.")


def test_tokenize_rendered_reads_sentencepiece_special_tokens(sentencepiece):
    def ids(text):
        return sentencepiece.tokenize([text])[0].numpy().tolist()

    assert tokenize_rendered(sentencepiece, "<s>the king</s>the dog</s>") == (
        [2] + ids("the king") + [3] + ids("the dog") + [3])
    assert tokenize_rendered(sentencepiece, "") == []


@pytest.mark.parametrize("source, messages, call, message", [
    ("{% for m in messages %}", CHAT, "render", r"not valid Jinja"),
    ("{{ raise_exception('no system role') }}", CHAT, "render",
     r"the chat template raised: no system role"),
    ("{{ messages[0]['content'] + 1 }}", CHAT, "render", r"failed to render"),
    # The last message is written differently from the ones before it.
    ("{% for m in messages %}{{ m['content'] }}{% if loop.last %}!{% endif %}{% endfor %}",
     CHAT, "turns", r"cannot be split into turns: its rendering of messages 1..2"),
    ("{% for m in messages %}{{ m['content'] + m['content'] }}{% endfor %}", CHAT,
     "user_message_frame", r"verbatim exactly once \(2 times\)"),
    # The sandbox keeps a template from changing its input.
    ("{{ messages.append(1) }}", CHAT, "render", r"failed to render.*unsafe"),
])
def test_template_errors(source, messages, call, message):
    with pytest.raises(ChatTemplateError, match=message):
        template = ChatTemplate(source)
        if call == "render":
            template.render(messages)
        elif call == "turns":
            template.turns(messages)
        else:
            template.user_message_frame()
