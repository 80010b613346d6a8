"""Words for the Chat pane: a model's label in the picker and the status line after a reply."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from tui_ft.safe_text import clean

KIND_NAMES = {"default": "default model", "hf-cache": "cached", "folder": "folder", "run": "run"}


def model_label(model: dict) -> str:
    """How a model from ``list_models`` reads in the picker, e.g. ``run · lora-1 (adapter)``."""
    ref, kind = model["ref"], model.get("kind", "folder")
    if kind == "default":
        return "default (SmolLM2-135M-Instruct)"
    if kind == "run":
        return f"run · {ref}" + (" (adapter)" if model.get("adapter") else " (full weights)")
    if kind == "folder":
        return f"folder · {Path(ref).name or ref}"
    return f"{KIND_NAMES.get(kind, kind)} · {ref}"


def describe_stats(stats) -> str:
    """``42 tokens · 35.1 tokens/s · first token 0.12 s`` from the engine's ``StreamStats``."""
    return (f"{stats.new_tokens} tokens · {stats.tokens_per_s:.1f} tokens/s · "
            f"first token {stats.time_to_first_token:.2f} s")


def describe_replies(replies: list, streaming: bool) -> Text:
    """The status line for the replies of the last prompt (one, or base and tuned)."""
    text = Text()
    for index, reply in enumerate(replies):
        if index:
            text.append("  │  ", style="dim")
        if len(replies) > 1:
            text.append(f"{reply.label}: ", style="bold")
        if not reply.done:
            text.append("generating…" if streaming else "waiting")
            continue
        if reply.stats is not None:
            text.append(describe_stats(reply.stats))
            stopped_by = reply.stats.stopped_by
            if stopped_by == "cancelled":
                text.append(" · stopped by you", style="yellow")
            elif stopped_by == "length":
                text.append(" · stopped at max new tokens", style="yellow")
        if reply.notice:
            style = "red" if reply.stats is None and reply.notice != "not started" else "yellow"
            text.append(("" if reply.stats is None else " · ") + clean(reply.notice), style=style)
    return text
