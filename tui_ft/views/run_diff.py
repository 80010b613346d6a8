"""The settings two or more runs differ in, from their ``run.json`` files (no torch here)."""

from __future__ import annotations

from pathlib import Path

import orjson

# Bookkeeping, not settings: every run differs in them.
NOT_SETTINGS = {"name", "created", "versions", "model_revision_resolved"}


def shown_value(value) -> str:
    """A setting as one short line: lists comma-separated, objects as compact JSON, absent as ``—``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def config_diff(configs: list[dict], home: Path | None = None) -> list[tuple[str, list[str]]]:
    """``(setting, each run's value)`` for every setting whose values are not all the same, sorted.

    A setting one run has and another lacks (an older run, from before it existed) differs too.
    Paths inside ``home`` are shown relative to it (``datasets/x.jsonl``), to fit side by side.
    """
    prefix = f"{Path(home).resolve()}/" if home is not None else None
    keys = sorted({key for config in configs for key in config} - NOT_SETTINGS)
    rows = []
    for key in keys:
        values = [shown_value(config.get(key)) for config in configs]
        if prefix:
            values = [value.removeprefix(prefix) for value in values]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows
