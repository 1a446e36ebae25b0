"""Chat templates: a conversation -> the text a chat model reads, and which parts of it
are the assistant's (the targets of supervised fine-tuning).

A template is Jinja text, as Hugging Face tokenizer_config.json ("chat_template") and
GGUF metadata ("tokenizer.chat_template") ship it. It is rendered the way Hugging Face
transformers renders it (a sandboxed, immutable Jinja environment with trim_blocks,
lstrip_blocks and loop controls; `raise_exception(message)`, a `tojson` filter that
writes plain JSON) with the variables `messages` (a list of {"role", "content"}),
`add_generation_prompt`, and `bos_token` / `eos_token` where the tokenizer has them.

A model that ships no template gets a default (ChatTemplate.for_model):

  DEFAULT_CHATML  for tokenizers with the tokens <|im_start|> and <|im_end|>; ChatML,
                  with no system prompt added:
                      <|im_start|>user\\nWhat is the capital of France?<|im_end|>\\n
                      <|im_start|>assistant\\nParis<|im_end|>\\n
                  and the generation prompt "<|im_start|>assistant\\n".
  DEFAULT_PLAIN   for everything else (models this repo pretrained without chat
                  tokens): plain text, turns separated by a blank line, the
                  tokenizer's eos token (when it has one) ending each assistant turn:
                      System: Answer briefly.\\n\\nUser: What is the capital of
                      France?\\n\\nAssistant: Paris</s>
                  and the generation prompt "Assistant:" (after "\\n\\n" when messages
                  precede it). The space after "Assistant:" belongs to the reply, so
                  the reply's first word tokenizes with its space as in running text,
                  and a model generating after the prompt writes it.

Special tokens written in rendered text ("<|im_end|>", "</s>") are read as their ids
(tokenize_rendered), as Hugging Face tokenizers read added tokens in text.
"""
import json
import re

import jinja2
import jinja2.sandbox
import tensorflow as tf

from kerasllm.errors import DataError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

DEFAULT_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

DEFAULT_PLAIN = (
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] }}"
    "{% if eos_token %}{{ eos_token }}{% endif %}"
    "{% else %}{{ raise_exception('unknown role ' + message['role'] + "
    "'; the plain template knows system, user and assistant') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{% if messages %}{{ '\\n\\n' }}{% endif %}{{ 'Assistant:' }}"
    "{% endif %}")

# Stands for a user message's content in user_message_frame; no template writes it.
_SENTINEL = "\u2063kerasllm-user-message\u2063"
# Strings tokenized per tokenizer.tokenize call: one traced call over many strings is
# what makes the byte-BPE tokenizer fast, and this bounds the ragged result's size.
_TOKENIZE_BATCH = 512


class ChatTemplateError(DataError):
    """A chat template that does not parse, fails to render a conversation, or cannot
    be split into prompt and reply turns."""


def _raise_exception(message):
    raise ChatTemplateError(f"the chat template raised: {message}")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes <, >, & and ' for HTML and sorts keys; templates were
    # written against plain json.dumps output (tool schemas, arguments).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def _environment():
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    environment.globals["raise_exception"] = _raise_exception
    environment.filters["tojson"] = _tojson
    return environment


_ENVIRONMENT = _environment()


def _clip(text, limit=200):
    return repr(text if len(text) <= limit else "..." + text[-limit:])


class ChatTemplate:
    """A chat template: Jinja text as Hugging Face tokenizer_config.json / GGUF metadata
    ship it.

    Attributes:
      source: the Jinja text.
      bos_token, eos_token: the strings the template sees as `bos_token` and
        `eos_token` (None: the variable is undefined, which renders as "").
    """

    def __init__(self, source, *, bos_token=None, eos_token=None):
        if not isinstance(source, str) or not source.strip():
            raise ChatTemplateError("a chat template must be non-empty Jinja text, got "
                                    f"{source!r}")
        try:
            self._template = _ENVIRONMENT.from_string(source)
        except jinja2.TemplateSyntaxError as error:
            raise ChatTemplateError(f"the chat template is not valid Jinja: {error.message} "
                                    f"(template line {error.lineno})") from None
        self.source = source
        self.bos_token, self.eos_token = bos_token, eos_token

    @classmethod
    def for_model(cls, chat_template, tokenizer):
        """The template of a model: the one its preset ships, else a default (see the
        module docstring), with the tokenizer's bos and eos tokens.

        Args:
          chat_template: Jinja text, or None (the preset ships none).
          tokenizer: a kerasllm.tokenizers.Tokenizer; its bos_id / eos_id, where it has
            them and they are not None, give bos_token / eos_token.
        """
        if chat_template is None:
            has_chatml = {IM_START, IM_END} <= set(tokenizer.special_ids())
            chat_template = DEFAULT_CHATML if has_chatml else DEFAULT_PLAIN
        bos_token, eos_token = (_token_text(tokenizer, getattr(tokenizer, name, None))
                                for name in ("bos_id", "eos_id"))
        return cls(chat_template, bos_token=bos_token, eos_token=eos_token)

    def render(self, messages, add_generation_prompt=False):
        """The text of `messages` (a list of {"role": str, "content": str}), followed by
        the prompt that asks for the assistant's next turn if add_generation_prompt."""
        special_tokens = {name: token for name, token in (
            ("bos_token", self.bos_token), ("eos_token", self.eos_token)) if token is not None}
        try:
            return self._template.render(messages=list(messages),
                                         add_generation_prompt=add_generation_prompt,
                                         **special_tokens)
        except (jinja2.TemplateError, TypeError) as error:
            # TypeError: e.g. `'<|im_start|>' + None` for a message without content.
            raise ChatTemplateError(f"the chat template failed to render the conversation: "
                                    f"{error}") from None

    def turns(self, messages):
        """The rendered conversation cut into pieces, each (text, is_reply).

        The pieces' texts join to render(messages). A reply piece is what the template
        adds for one assistant message after the generation prompt: its content and the
        template's end of turn (ChatML: "Paris<|im_end|>\\n"); everything else (system
        and user turns, generation prompts) is prompt. Consecutive prompt text is one
        piece, so pieces alternate unless a reply is empty.

        Raises:
          ChatTemplateError: the template renders the conversation up to an assistant
            message as text that is not its rendering of the messages before it plus the
            generation prompt, so its replies cannot be told apart.
        """
        messages = list(messages)
        text = self.render(messages)
        pieces, done = [], 0
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:i], add_generation_prompt=True)
            turn = self.render(messages[:i + 1])
            if not (turn.startswith(prompt) and text.startswith(turn) and len(prompt) >= done):
                raise ChatTemplateError(
                    f"the chat template cannot be split into turns: its rendering of messages "
                    f"1..{i + 1} is not its rendering of messages 1..{i} with the generation "
                    f"prompt ({_clip(prompt)}) followed by the reply, or a later message "
                    "changes it; fine-tuning needs a template whose text grows turn by turn")
            if len(prompt) > done:
                pieces.append((text[done:len(prompt)], False))
            pieces.append((text[len(prompt):len(turn)], True))
            done = len(turn)
        if len(text) > done:
            pieces.append((text[done:], False))
        return pieces

    def user_message_frame(self):
        """(prefix, suffix): the text a one-message conversation puts around the user's
        message, generation prompt included, i.e.
        render([{"role": "user", "content": X}], add_generation_prompt=True)
        == prefix + X + suffix (what a serving graph concatenates around raw input).

        Raises:
          ChatTemplateError: the template does not write a user message's content
            verbatim, exactly once.
        """
        text = self.render([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True)
        if text.count(_SENTINEL) != 1:
            raise ChatTemplateError(
                "the chat template does not write a user message's content verbatim exactly "
                f"once ({text.count(_SENTINEL)} times), so a message cannot be framed by "
                "fixed text")
        prefix, suffix = text.split(_SENTINEL)
        return prefix, suffix


def _token_text(tokenizer, token_id):
    """The string of token `token_id` (None -> None)."""
    if token_id is None:
        return None
    return tokenizer.id_to_token(tf.constant([token_id])).numpy()[0].decode("utf-8")


def _special_token_pattern(tokenizer):
    """A regex whose one group matches any special token string, longest first (so
    "<|im_start|>" wins over a special token that is its prefix); None if none."""
    tokens = sorted(tokenizer.special_ids(), key=len, reverse=True)
    if not tokens:
        return None
    return re.compile("(" + "|".join(re.escape(token) for token in tokens) + ")")


def tokenize_rendered_batch(tokenizer, texts):
    """tokenize_rendered for many texts, list of str -> list of int lists, with one
    tokenizer.tokenize call per _TOKENIZE_BATCH strings between special tokens."""
    special_ids = tokenizer.special_ids()
    pattern = _special_token_pattern(tokenizer)
    # re.split with a group keeps the special tokens, at the odd places.
    parts = [[part for part in (pattern.split(text) if pattern else [text]) if part]
             for text in texts]
    plain = [part for text_parts in parts for part in text_parts if part not in special_ids]
    plain_ids = iter([ids for start in range(0, len(plain), _TOKENIZE_BATCH)
                      for ids in tokenizer.tokenize(plain[start:start + _TOKENIZE_BATCH])
                      .to_list()])
    return [[token for part in text_parts
             for token in ([special_ids[part]] if part in special_ids else next(plain_ids))]
            for text_parts in parts]


def tokenize_rendered(tokenizer, text):
    """The ids of rendered chat text, list of int.

    The tokenizer's special-token strings (its special_ids() keys) in `text` become
    their ids; the text between them is tokenized as usual. SentencePiece would spell
    "</s>" in text as characters; a byte-BPE tokenizer already reads its special tokens
    in text, and gets the same ids either way. As in Hugging Face, a special-token
    string inside a message's content is read as that token too.
    """
    return tokenize_rendered_batch(tokenizer, [text])[0]

