"""Chat transcripts as Markdown: one heading per turn, the model and settings on top.

Written to ``<home>/transcripts/<timestamp>-<reference-slug>.md`` unless the user gives a path.
"""

from __future__ import annotations

import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

from tui_ft.engine.workspace import reference_slug

ROLE_TITLES = {"user": "User", "assistant": "Assistant", "system": "System"}


def transcript_markdown(
    turns: list[dict], model: str, settings=None, system_prompt: str = "", exported: float | None = None
) -> str:
    """Render a conversation as Markdown.

    Args:
        turns: Messages in order, each ``{"role", "content"}`` with an optional ``label`` (for
            example ``base`` or ``tuned`` in compare mode) shown next to the role.
        model: The model reference the conversation was held with.
        settings: The generation settings (a dataclass or a dict), listed under the title.
        system_prompt: The system prompt, if any.
        exported: Epoch seconds of the export (now when None).

    Returns:
        The Markdown text, ending with a newline.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(exported if exported is not None else time.time()))
    lines = [f"# Chat with {model}", "", f"- model: `{model}`", f"- exported: {stamp}"]
    values = asdict(settings) if is_dataclass(settings) else dict(settings or {})
    if values:
        lines.append("- settings: " + ", ".join(f"{key} {value}" for key, value in values.items()))
    if system_prompt:
        lines += ["", "## System", "", system_prompt.strip()]
    for turn in turns:
        title = ROLE_TITLES.get(turn["role"], turn["role"].capitalize())
        if turn.get("label"):
            title += f" ({turn['label']})"
        lines += ["", f"## {title}", "", turn["content"].strip() or "_(empty)_"]
    return "\n".join(lines) + "\n"


def default_transcript_path(home: Path, model: str, exported: float | None = None) -> Path:
    """``<home>/transcripts/<YYYYmmdd-HHMMSS>-<reference-slug>.md``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(exported if exported is not None else time.time()))
    return Path(home) / "transcripts" / f"{stamp}-{reference_slug(model)}.md"


def export_transcript(
    turns: list[dict],
    model: str,
    home: Path,
    path: Path | None = None,
    settings=None,
    system_prompt: str = "",
) -> Path:
    """Write a conversation as Markdown and return the file written.

    Args:
        turns: Messages as for :func:`transcript_markdown`.
        model: The model reference.
        home: The workspace (for the default location).
        path: Where to write (relative paths are inside ``home``); a folder gets the default
            file name inside it. None: the default location under ``<home>/transcripts/``.
        settings: The generation settings.
        system_prompt: The system prompt, if any.
    """
    now = time.time()
    target = Path(home) / Path(path).expanduser() if path else default_transcript_path(home, model, now)
    if target.is_dir():
        target = target / default_transcript_path(home, model, now).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(transcript_markdown(turns, model, settings, system_prompt, now), encoding="utf-8")
    return target
