"""Turning a growing list of token ids into text pieces that are safe to show as they come.

Two problems of streaming text:

- a token can be a fragment of a multi-byte character (an emoji spans several byte tokens)
  and a token's leading space depends on the tokens before it, so tokens cannot be decoded
  one at a time; :class:`IncrementalDecoder` decodes a short window and emits only text that
  is complete;
- a stop marker (``### Instruction:``) arrives over several tokens, so text that could be
  the start of a marker is held back until it is known not to be; :class:`MarkerGuard`.
"""

from __future__ import annotations

REPLACEMENT_CHAR = "\ufffd"  # what decoding produces for an incomplete UTF-8 sequence


class IncrementalDecoder:
    """Decodes token ids as they arrive, returning only completed text.

    The window technique is the one of transformers' ``TextStreamer`` and vLLM: decode the
    tokens since ``prefix`` and compare with the already emitted part, so spaces that depend
    on the previous token come out right.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the decoding window
        self.read = 0  # tokens before this are emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add a token; return the newly completed text (often empty)."""
        self.ids.append(token_id)
        emitted = self._decode(self.ids[self.prefix : self.read])
        current = self._decode(self.ids[self.prefix :])
        if len(current) <= len(emitted) or current.endswith(REPLACEMENT_CHAR):
            return ""  # an incomplete character: wait for its next byte
        self.prefix, self.read = self.read, len(self.ids)
        return current[len(emitted) :]

    def flush(self) -> str:
        """Text still held back at the end (an incomplete character stays out)."""
        emitted = self._decode(self.ids[self.prefix : self.read])
        current = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return current[len(emitted) :].rstrip(REPLACEMENT_CHAR)


class MarkerGuard:
    """Holds back text that might begin a stop marker, and finds a complete marker.

    Trailing whitespace is held back too, so the blank line before a marker never shows.
    """

    def __init__(self, markers: tuple[str, ...] | list[str] = ()):
        self.markers = tuple(m for m in markers if m)
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def _held_back(self) -> int:
        """How many trailing characters could still be part of a marker or trailing space."""
        held = len(self.text) - len(self.text.rstrip())
        for marker in self.markers:
            for size in range(min(len(marker) - 1, len(self.text)), 0, -1):
                if self.text.endswith(marker[:size]):
                    held = max(held, size + len(self.text[: -size]) - len(self.text[: -size].rstrip()))
                    break
        return held

    def push(self, piece: str) -> str:
        """Add decoded text; return what is safe to show. Sets ``stopped`` at a marker."""
        if self.stopped:
            return ""
        start = max(0, len(self.text) - max((len(m) for m in self.markers), default=0))
        self.text += piece
        hits = [i for i in (self.text.find(m, start) for m in self.markers) if i >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)].rstrip()
            return self.flush()
        end = len(self.text) - self._held_back()
        out = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return out

    def flush(self) -> str:
        """Everything not yet shown, without trailing whitespace (the reply is over)."""
        end = len(self.text.rstrip())
        out = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return out
