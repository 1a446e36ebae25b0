"""Supervised fine-tuning data for GPT models: chat and instruction files ->
conversations -> token ids with a per-token target mask -> tf.data batches.

File formats, chosen by extension (UTF-8, a leading byte-order mark is ignored):
  .jsonl  one JSON object per line, each line either
            a chat:         {"messages": [{"role": "system" | "user" | "assistant",
                                           "content": str}, ...]}
            an instruction: {"prompt": str, "response": str}
          decided line by line, so one file may mix them; other fields are ignored.
  .tsv    a header row naming the columns `prompt` and `response` (any order; other
          columns are ignored), then one instruction per row, split on tabs with no
          quoting (a cell cannot hold a tab or a line break: use .jsonl for those).
An instruction becomes the chat [user: prompt, assistant: response]. A conversation
needs an assistant message with some content and must end with one (a message after
the last reply teaches nothing). Every problem is a ChatDataError whose message
starts "path:line:".

Examples (tokenize_conversations): the conversation rendered with the model's chat
template (kerasllm.data.chat_template), its bos id first where the tokenizer has one;
target_mask is 1 on the tokens of the assistant's turns (content and end of turn,
e.g. "Paris<|im_end|>\\n"), the tokens a fine-tuned model learns to write, and 0 on
everything else. Each example is one row of its batch (examples are never packed
together), padded to the batch's longest.
"""
import collections
import functools
import os

import numpy as np
import tensorflow as tf

from kerasllm.data.batching import (LENGTH_MULTIPLE_COMPILED, PackedExamples, packed_dataset,
                                    sharded_dataset_fn)
from kerasllm.data.chat_template import ChatTemplateError, tokenize_rendered_batch
from kerasllm.data.example_files import (STRING, ExampleFileError, check_fields,
                                         jsonl_objects, line_error, numbered_lines, read_records)

MESSAGES, PROMPT, RESPONSE = "messages", "prompt", "response"
ROLES = ("system", "user", "assistant")
FORMATS = (".jsonl", ".tsv")


class ChatDataError(ExampleFileError):
    """A chat or instruction file is unreadable or has a malformed line, or an
    example cannot be made from it."""


Conversation = collections.namedtuple("Conversation", ["messages", "where"])
Conversation.__doc__ = ("One conversation: messages, a list of {'role', 'content'} dicts, "
                        "and where, the 'path:line' it was read from.")


def _error(path, line, message):
    return line_error(ChatDataError, path, line, message)


def _undecodable_line(path):
    """The number of the first line of `path` that is not UTF-8 (a newline byte is
    never inside a UTF-8 sequence, so lines decode on their own)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def _text_lines(path, f):
    """The lines of `f` without a leading byte-order mark; text that is not UTF-8
    raises ChatDataError naming its line (the decoder reads ahead, so the line being
    read when it fails is not the bad one)."""
    try:
        for number, line in enumerate(f):
            yield line[1:] if number == 0 and line.startswith("\ufeff") else line
    except UnicodeDecodeError as error:
        raise _error(path, _undecodable_line(path),
                     f"not UTF-8 text ({error.reason}); save the file as UTF-8") from None


def _chat(path, line, messages):
    """A Conversation of a "messages" field, checked."""
    if not isinstance(messages, list) or not messages:
        raise _error(path, line, f"{MESSAGES!r} must be a non-empty list of "
                                 '{"role": ..., "content": ...} objects')
    checked = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise _error(path, line, f"message {number} is not a JSON object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise _error(path, line, f"message {number} has role {role!r}; use one of "
                                     f"{', '.join(ROLES)}")
        if not isinstance(content, str):
            raise _error(path, line, f"message {number}'s content must be a string, got "
                                     f"{type(content).__name__}")
        if role == "assistant" and not content.strip():
            raise _error(path, line, f"message {number} (assistant) is empty; write the "
                                     "reply or drop the message")
        checked.append({"role": role, "content": content})
    if not any(message["role"] == "assistant" for message in checked):
        raise _error(path, line, "no assistant message, so nothing to learn; add the "
                                 "assistant's reply")
    if checked[-1]["role"] != "assistant":
        raise _error(path, line, f"the conversation ends with a {checked[-1]['role']} "
                                 "message, which no reply follows; end it with the "
                                 "assistant's reply or drop the message")
    return Conversation(checked, f"{path}:{line}")


def _instruction(path, line, prompt, response):
    if not response.strip():
        raise _error(path, line, "empty response; write the response or drop the line")
    return _chat(path, line, [{"role": "user", "content": prompt},
                              {"role": "assistant", "content": response}])


def _record_conversation(path, line, record):
    """The Conversation of one JSON object: a chat or an instruction."""
    if MESSAGES in record:
        if PROMPT in record or RESPONSE in record:
            raise _error(path, line, f"has both {MESSAGES!r} and {PROMPT!r}/{RESPONSE!r}; "
                                     "give a chat or an instruction, not both")
        return _chat(path, line, record[MESSAGES])
    if PROMPT in record or RESPONSE in record:
        check_fields(path, line, record, ChatDataError,
                     required={PROMPT: STRING, RESPONSE: STRING})
        return _instruction(path, line, record[PROMPT], record[RESPONSE])
    raise _error(path, line, f"needs {MESSAGES!r} (a chat) or {PROMPT!r} and "
                             f"{RESPONSE!r} (an instruction)")


def _jsonl_conversations(path, f):
    for line, record in jsonl_objects(path, _text_lines(path, f), ChatDataError):
        yield _record_conversation(path, line, record)


def conversations_of(records, source="examples"):
    """Conversations of Python dicts as the .jsonl lines hold them (chats or
    instructions), checked as a file's are: errors name `source` and the record's
    number from 1."""
    conversations = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise _error(source, number, f"expected a dict, got {type(record).__name__}")
        conversations.append(_record_conversation(source, number, record))
    return conversations


def _tsv_conversations(path, f):
    rows = numbered_lines(_text_lines(path, f))
    header_line, header = next(rows, (1, None))
    if header is None:
        raise _error(path, 1, f"empty file; write a header naming the columns {PROMPT!r} "
                              f"and {RESPONSE!r}, then one instruction per line")
    header = [name.strip() for name in header.split("\t")]
    if header.count(PROMPT) != 1 or header.count(RESPONSE) != 1:
        raise _error(path, header_line, f"the header must name the columns {PROMPT!r} and "
                                        f"{RESPONSE!r} once each (tab-separated); got {header}")
    for line, text in rows:
        if not text:
            raise _error(path, line, "empty line")
        cells = text.split("\t")
        if len(cells) != len(header):
            raise _error(path, line, f"{len(cells)} columns, but the header has {len(header)}")
        row = dict(zip(header, cells))
        yield _instruction(path, line, row[PROMPT], row[RESPONSE])


def read_conversations(path):
    """The conversations of one chat or instruction file (formats in the module
    docstring), in file order.

    Returns:
      list of Conversation.
    Raises:
      ChatDataError: "path:line: ..." for an unknown extension, a file that is not
        UTF-8 or has no examples, bad JSON, a line that is neither a chat nor an
        instruction, an unknown role, content that is not a string, an empty reply,
        a conversation without a reply or not ending with one, a .tsv header without
        `prompt` and `response`, a row with the wrong number of columns.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise _error(path, 1, f"unknown format {extension!r}; name the file .jsonl (chats or "
                              "instructions) or .tsv (prompt and response columns)")
    parse = _jsonl_conversations if extension == ".jsonl" else _tsv_conversations
    conversations = list(read_records(path, functools.partial(parse, path), ChatDataError))
    if not conversations:
        raise _error(path, 1, "no examples; the file is empty (or has only a header)")
    return conversations


def _conversation_turns(template, conversation):
    """template.turns of a conversation, a template failure named by its path:line."""
    try:
        return template.turns(conversation.messages)
    except ChatTemplateError as error:
        raise ChatDataError(f"{conversation.where}: {error}") from None


def _example(pieces, bos_id, max_seq_length, where):
    """(ids, mask, truncated) of one conversation's tokenized (ids, is_reply) pieces: bos
    first, the mask 1 on the reply pieces, at most max_seq_length tokens (the first
    tokens after the bos dropped)."""
    ids, mask, last_reply = [], [], 0
    for piece_ids, is_reply in pieces:
        if is_reply:
            last_reply = len(ids)
        ids += piece_ids
        mask += [int(is_reply)] * len(piece_ids)
    # A template that writes bos_token itself has put it there already.
    kept = 0
    if bos_id is not None:
        if ids[:1] != [bos_id]:
            ids, mask, last_reply = [bos_id] + ids, [0] + mask, last_reply + 1
        kept = 1
    reply_length = len(ids) - last_reply
    if kept + reply_length > max_seq_length:
        raise ChatDataError(f"{where}: the response alone is {reply_length} tokens"
                            f"{' (+1 bos)' if kept else ''}, more than --max_seq_length="
                            f"{max_seq_length}; raise it or shorten the response")
    if len(ids) <= max_seq_length:
        return ids, mask, False
    start = len(ids) - (max_seq_length - kept)
    return ids[:kept] + ids[start:], mask[:kept] + mask[start:], True


def _ragged(rows):
    """int32 RaggedTensor [n, (L)] of a list of int lists."""
    lengths = [len(row) for row in rows]
    flat = np.fromiter((value for row in rows for value in row), np.int32, sum(lengths))
    return tf.RaggedTensor.from_row_lengths(flat, np.asarray(lengths, np.int64))


def tokenize_conversations(conversations, template, tokenizer, max_seq_length):
    """Conversations -> examples for a causal LM that learns only the replies.

    Each conversation is template.turns, each piece tokenized by tokenize_rendered
    (special-token strings as their ids), joined in order after the tokenizer's
    bos_id when it has one that is not None. target_mask[t] = 1 marks token t as a
    target: a token of an assistant turn, predicted from the tokens before it. An
    example longer than max_seq_length loses tokens from the front (after the bos),
    so its last reply stays whole.

    Args:
      conversations: list of Conversation (read_conversations).
      template: kerasllm.data.chat_template.ChatTemplate.
      tokenizer: a kerasllm.tokenizers.Tokenizer.
      max_seq_length: S, the most tokens an example keeps.
    Returns:
      (examples, stats): PackedExamples with token_ids, segment_ids (all 0) and
      target_mask int32 [n, (L)], L <= S; stats {"examples", "truncated" (how many
      lost prompt tokens), "tokens", "target_tokens"} (ints, after truncation).
    Raises:
      ChatDataError: "path:line: ..." for a conversation the template cannot render or
        split into turns, or whose last reply alone is longer than S.
    """
    turns = [_conversation_turns(template, conversation) for conversation in conversations]
    piece_ids = iter(tokenize_rendered_batch(
        tokenizer, [text for pieces in turns for text, _ in pieces]))
    bos_id = getattr(tokenizer, "bos_id", None)
    rows, masks, truncated = [], [], 0
    for conversation, pieces in zip(conversations, turns):
        ids, mask, cut = _example([(next(piece_ids), is_reply) for _, is_reply in pieces],
                                  bos_id, max_seq_length, conversation.where)
        rows.append(ids)
        masks.append(mask)
        truncated += cut
    token_ids = _ragged(rows)
    examples = PackedExamples({"token_ids": token_ids,
                               "segment_ids": tf.zeros_like(token_ids),
                               "target_mask": _ragged(masks)})
    stats = {"examples": len(rows), "truncated": truncated,
             "tokens": sum(len(row) for row in rows),
             "target_tokens": sum(sum(mask) for mask in masks)}
    return examples, stats


def _model_inputs(batch):
    # Every example's segment is 0; GPT models read token_ids, padding_mask, positions.
    return {name: value for name, value in batch.items() if name != "segment_ids"}


def chat_dataset(examples, *, pad_id, max_seq_length, batch_size, training, seed=None,
                 length_multiple=LENGTH_MULTIPLE_COMPILED, start_batch=0):
    """tf.data batches of tokenize_conversations' examples, one example a row.

    Args:
      examples: PackedExamples from tokenize_conversations.
      pad_id: the tokenizer's pad id.
      max_seq_length: S.
      batch_size: B.
      training: True: endless epochs of full batches of similar lengths, batch k a
        pure function of (seed, k); False: one pass, shortest first, the last batch
        possibly smaller (see kerasllm.data.batching.bucketed_batches).
      seed: training only; None acts as 0.
      length_multiple: a batch's length is its longest example rounded up to a
        multiple of this (at most S).
      start_batch: training only: the first batch to give.
    Returns:
      tf.data.Dataset of dicts: token_ids (pad_id after each example), padding_mask,
      target_mask (0 on padding) int32 [B, S'], S' <= S.
    """
    return packed_dataset(examples, pad_id=pad_id, max_seq_length=max_seq_length,
                          batch_size=batch_size, training=training, seed=seed,
                          length_multiple=length_multiple, start_batch=start_batch
                          ).map(_model_inputs)


def chat_dataset_fn(examples, *, pad_id, max_seq_length, global_batch_size, seed=None,
                    length_multiple=LENGTH_MULTIPLE_COMPILED):
    """A training dataset_fn for kerasllm.training.loop.train (see
    kerasllm.data.batching.sharded_dataset_fn) of chat_dataset's training batches.

    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset].
    """
    return sharded_dataset_fn(
        examples, functools.partial(chat_dataset, pad_id=pad_id, max_seq_length=max_seq_length,
                                    training=True, length_multiple=length_multiple),
        global_batch_size=global_batch_size, seed=seed)
