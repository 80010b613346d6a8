"""Streamed text: stop markers never shown, multi-byte characters never broken, spaces kept.

A scripted model says a fixed text token by token whatever the prompt, so the text side of
streaming is tested on exact strings.
"""

from __future__ import annotations

import pytest
import torch

from tui_ft.engine.data.templates import ALPACA_END_MARKER
from tui_ft.engine.generation import GenerationSettings, generate_reply, stream_reply
from tui_ft.engine.generation.detokenize import REPLACEMENT_CHAR, IncrementalDecoder, MarkerGuard


class ScriptedModel(torch.nn.Module):
    """A stand-in causal LM that answers with ``script`` (token ids), then repeats its last token."""

    def __init__(self, config, script: list[int]):
        super().__init__()
        self.config = config
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device
        self.script = script
        self.calls = 0

    def forward(self, input_ids, **_ignored):
        token = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        logits = torch.full((1, input_ids.shape[1], self.config.vocab_size), -1e4)
        logits[..., token] = 0.0
        return type("Output", (), {"logits": logits})()


@pytest.fixture(scope="module")
def config(tiny_model_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_model_dir)


def say(config, tokenizer, text: str, eos: bool = True, markers=(), max_new_tokens: int = 200):
    """Stream ``text`` from a scripted model; return the pieces and the stats."""
    script = tokenizer.encode(text, add_special_tokens=False) + ([tokenizer.eos_token_id] if eos else [])
    found = []
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    pieces = list(stream_reply(ScriptedModel(config, script), tokenizer, "Q:", settings, markers, on_done=found.append))
    return pieces, found[0], script


def test_multibyte_characters_and_spaces_stream_whole(config, tokenizer):
    text = "Café ☕ naïve 日本語 🎉 spaces  kept,\n\tand done."
    pieces, stats, script = say(config, tokenizer, text)
    assert any(REPLACEMENT_CHAR in tokenizer.decode([t]) for t in script)  # some tokens are byte fragments
    assert not any(REPLACEMENT_CHAR in piece for piece in pieces)
    assert "".join(pieces) == text
    assert len(pieces) > 10 and stats.stopped_by == "eos"


def test_alpaca_marker_stops_and_is_not_shown(config, tokenizer):
    text = "Paris is the capital of France.\n\n### Instruction:\nAnd Spain?"
    pieces, stats, _ = say(config, tokenizer, text, eos=False, markers=(ALPACA_END_MARKER,))
    assert "".join(pieces) == "Paris is the capital of France."
    assert not any("#" in piece for piece in pieces)
    assert stats.stopped_by == "marker"
    assert stats.new_tokens < len(tokenizer.encode(text, add_special_tokens=False))


def test_text_that_only_starts_like_a_marker_is_shown(config, tokenizer):
    text = "Use ### Instr for headings; # is fine."
    pieces, stats, _ = say(config, tokenizer, text, markers=(ALPACA_END_MARKER,))
    assert "".join(pieces) == text
    assert stats.stopped_by == "eos"


def test_length_limit_and_generate_reply_agree(config, tokenizer):
    text = "one two three four five six seven eight"
    pieces, stats, _ = say(config, tokenizer, text, eos=False, max_new_tokens=3)
    assert "".join(pieces) == "one two three"
    assert stats.stopped_by == "length" and stats.new_tokens == 3
    script = tokenizer.encode(text, add_special_tokens=False)
    whole = generate_reply(ScriptedModel(config, script), tokenizer, "Q:", GenerationSettings(max_new_tokens=3))
    assert whole == "one two three"


def test_incremental_decoder_holds_back_a_split_character(tokenizer):
    ids = tokenizer.encode("🎉!", add_special_tokens=False)
    decoder = IncrementalDecoder(tokenizer)
    out = [decoder.push(i) for i in ids]
    assert out[0] == ""  # the first byte of the emoji alone is not shown
    assert "".join(out) + decoder.flush() == "🎉!"


def test_marker_guard_finds_a_marker_split_over_pieces():
    guard = MarkerGuard([ALPACA_END_MARKER])
    shown = [guard.push(p) for p in ["Answer", " here.\n", "\n##", "# Instr", "uction:", " more"]]
    assert "".join(shown) == "Answer here."
    assert shown[3] == "" and guard.stopped
