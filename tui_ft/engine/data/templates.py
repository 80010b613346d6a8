"""Prompt templates, and tokenization that appends EOS and builds the loss mask.

Two templates:

- ``alpaca`` — the seed chapter's ``### Instruction:`` / ``### Response:`` text, with EOS
  appended after every response so the model learns to stop;
- ``chat`` — the tokenizer's own chat template (``apply_chat_template``).

Rendering returns the full text and the character spans that are trained on (assistant
replies and the end marker that follows them). Tokenization maps those spans onto tokens
through the tokenizer's offsets, so the prompt is tokenized exactly once, inside the full
text, and its tokens are a prefix of the example's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui_ft.engine.data.formats import Example

TEMPLATES = ("alpaca", "chat")
IGNORE_INDEX = -100
ALPACA_END_MARKER = "### Instruction:"  # generation stops here too: the model began a new turn


@dataclass
class Rendered:
    """A rendered example: the text and the ``[start, end)`` character spans to train on."""

    text: str
    trained_spans: list[tuple[int, int]]


@dataclass
class Tokenized:
    """Token ids, labels (``IGNORE_INDEX`` where no loss is computed) and truncation facts."""

    input_ids: list[int]
    labels: list[int]
    full_length: int  # before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def default_template(tokenizer) -> str:
    """The chat template when the tokenizer has one, else the seed's alpaca template."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "alpaca"


def _alpaca_turn(user: str, extra: str) -> str:
    if extra.strip():
        return f"### Instruction:\n{user}\n\n### Input:\n{extra}\n\n### Response:\n"
    return f"### Instruction:\n{user}\n\n### Response:\n"


def render_alpaca(example: Example, eos_token: str) -> Rendered:
    """Render with the seed's template; each response is followed by the EOS token."""
    text, spans, first_user = "", [], True
    for message in example.messages:
        if message["role"] == "system":
            text += message["content"].strip() + "\n\n"
        elif message["role"] == "user":
            text += _alpaca_turn(message["content"], example.input if first_user else "")
            first_user = False
        else:
            start = len(text)
            text += message["content"] + eos_token
            spans.append((start, len(text)))
    return Rendered(text, spans)


def render_chat(example: Example, tokenizer) -> Rendered:
    """Render with the tokenizer's chat template; each assistant reply and its end marker train.

    The span of assistant turn i is found by rendering the conversation up to turn i with the
    generation prompt (where the reply starts) and up to and including turn i (where it ends).
    """
    messages = _with_input(example)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise ValueError("the chat template renders turns inconsistently; use the alpaca template")
        end = len(through.rstrip())  # trailing newlines after the end marker are not trained
        spans.append((len(before), end))
    eos = tokenizer.eos_token or ""
    if eos and spans and eos not in text[spans[-1][0] :]:
        # Templates that close a turn without EOS still need it: the model must learn to stop.
        text = text[: spans[-1][1]] + eos + text[spans[-1][1] :]
        spans[-1] = (spans[-1][0], spans[-1][1] + len(eos))
    return Rendered(text, spans)


def _with_input(example: Example) -> list[dict[str, str]]:
    if not example.input.strip():
        return example.messages
    messages = [dict(m) for m in example.messages]
    for message in messages:
        if message["role"] == "user":
            message["content"] = f"{message['content']}\n\n{example.input}"
            break
    return messages


def render(example: Example, tokenizer, template: str) -> Rendered:
    """Render an example with ``template`` (``alpaca`` or ``chat``)."""
    if template == "alpaca":
        return render_alpaca(example, tokenizer.eos_token or "")
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("this tokenizer has no chat template; use --template alpaca")
        return render_chat(example, tokenizer)
    raise ValueError(f"unknown template {template!r} (expected alpaca or chat)")


def render_prompt(messages: list[dict[str, str]], tokenizer, template: str) -> str:
    """Render a conversation that ends with a user turn, ready for the model to reply."""
    if template == "alpaca":
        return render_alpaca(Example(messages), tokenizer.eos_token or "").text
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _adds_bos_twice(tokenizer, text: str) -> bool:
    bos = tokenizer.bos_token
    return bool(bos) and text.startswith(bos)


def encode_text(tokenizer, text: str) -> list[int]:
    """Tokenize with the default special tokens, never doubling a BOS the template wrote."""
    return tokenizer(text, add_special_tokens=not _adds_bos_twice(tokenizer, text))["input_ids"]


def tokenize_rendered(
    rendered: Rendered, tokenizer, max_length: int | None = None, train_on_prompt: bool = False
) -> Tokenized:
    """Tokenize a rendered example and label the tokens inside its trained spans."""
    encoding = tokenizer(
        rendered.text,
        add_special_tokens=not _adds_bos_twice(tokenizer, rendered.text),
        return_offsets_mapping=True,
    )
    ids = encoding["input_ids"]
    labels = []
    for token, (start, end) in zip(ids, encoding["offset_mapping"], strict=False):
        # A token trains when it overlaps a trained span: a reply's first token may begin
        # in the prompt (" Hello" after a template's "assistant:") and must still be
        # learnt. A zero-width token (an added BOS) overlaps nothing and trains only with
        # train_on_prompt.
        inside = end > start and any(start < e and end > s for s, e in rendered.trained_spans)
        labels.append(token if (inside or train_on_prompt) else IGNORE_INDEX)
    full_length = len(ids)
    if max_length is not None and full_length > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Tokenized(ids, labels, full_length)


def tokenize_example(
    example: Example, tokenizer, template: str, max_length: int | None = None, train_on_prompt: bool = False
) -> Tokenized:
    """Render and tokenize one example; see :func:`tokenize_rendered`."""
    return tokenize_rendered(render(example, tokenizer, template), tokenizer, max_length, train_on_prompt)


def mask_segments(tokenized: Tokenized, tokenizer) -> list[tuple[str, bool]]:
    """Split the tokenized text into ``(text, trained)`` runs, for showing the loss mask."""
    segments: list[tuple[str, bool]] = []
    run: list[int] = []
    trained = None
    for token, label in zip(tokenized.input_ids, tokenized.labels, strict=False):
        flag = label != IGNORE_INDEX
        if trained is not None and flag != trained:
            segments.append((tokenizer.decode(run), trained))
            run = []
        run.append(token)
        trained = flag
    if run:
        segments.append((tokenizer.decode(run), bool(trained)))
    return segments
