"""Stored evaluation results, so the Benchmark table fills from disk and nothing is recomputed.

A run's results live in ``checkpoints/<run>/bench/``; any other model's (default, a folder,
a cached model) in ``<home>/bench/<results-folder-name>/``. One JSON file per result, named by a hash
of what identifies it (model, checkpoint, benchmark or dataset, template, generation settings,
scorer). Inside, ``fingerprint`` records what could silently change the answer (the file's
content hash, the weights' size and time); a result whose fingerprint no longer matches is
recomputed and overwritten. Files are written atomically (tmp + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import orjson

from tui_ft.engine.files import read_json, warn_skipped
from tui_ft.engine.models import ModelRef

EXPORTS_FOLDER = "exports"  # bench_table.export_table's default destination
JOBS_FOLDER = "jobs"  # <home>/bench/jobs/<id>/ holds detached evaluation jobs, not results
MAX_RESULT_BYTES = 64 << 20  # a result keeps every item's reply: a few MB for thousands of items


def now_iso() -> str:
    """The time now in UTC, ISO 8601 to the second: when a result was made, when a job's status changed."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (a benchmark edited in place must be recomputed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def results_folder_name(resolved: ModelRef) -> str:
    """A folder name for a model's results: ``default``, ``org--name``, or ``name-<hash>``."""
    if resolved.kind == "default":
        return "default"
    if resolved.kind == "hf-cache":
        return resolved.ref.replace("/", "--")
    identity = f"{resolved.path.resolve()}|{resolved.adapter or ''}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.path.name).strip("-") or "model"
    return f"{name}-{hashlib.sha1(identity.encode()).hexdigest()[:8]}"


def results_dir(resolved: ModelRef, home: Path, run_dir: Path | None = None) -> Path:
    """Where a model's results are stored: ``<run_dir>/bench`` for a run, else ``<home>/bench/<slug>``."""
    if run_dir is not None:
        return Path(run_dir) / "bench"
    return Path(home) / "bench" / results_folder_name(resolved)


def weights_stamp(folder: Path | None) -> list:
    """Size and modification time of the weight files in ``folder`` (cheap; no hashing)."""
    if folder is None or not folder.is_dir():
        return []
    stamp = []
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        info = path.stat()
        stamp.append([path.name, info.st_size, info.st_mtime_ns])
    return stamp


def result_key(identity: dict) -> str:
    """A short stable hash of the fields that identify a result."""
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


IDENTITY_FIELDS = {  # what evaluate_task keys a result by, beside the model's identity; see identity_of
    "benchmark": ("kind", "checkpoint", "template", "benchmark", "scorer", "settings"),
    "perplexity": ("kind", "checkpoint", "template", "dataset", "max_length"),
    "reward": ("kind", "checkpoint", "template", "prompts", "reward_model", "settings"),
}


def identity_of(record: dict) -> dict:
    """The identity a stored result was keyed by (``model`` is the weights' identity, ``model_id`` in the record)."""
    return {"model": record.get("model_id")} | {name: record.get(name) for name in IDENTITY_FIELDS[record["kind"]]}


def result_path(folder: Path, identity: dict) -> Path:
    """The file a result with ``identity`` is stored in, inside ``folder``."""
    source = Path(identity.get("benchmark") or identity.get("dataset") or identity.get("prompts") or "result").stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", source)[:40]
    checkpoint = f"{identity['checkpoint']}-" if identity.get("checkpoint") else ""
    return folder / f"{identity['kind']}-{checkpoint}{name}-{result_key(identity)}.json"


def lookup(path: Path, fingerprint: dict) -> dict | None:
    """The stored result at ``path`` when its fingerprint still matches, else ``None``."""
    record = read_json(path, MAX_RESULT_BYTES)
    if not record or record.get("fingerprint") != fingerprint:
        return None
    return record


def result_files(home: Path) -> list[Path]:
    """Every stored result file in the workspace: ``bench/*/`` and ``checkpoints/*/bench/``."""
    home = Path(home)
    # jobs/ holds job state and exports/ the tables a user exported: neither is a result.
    files = [p for p in (home / "bench").glob("*/*.json") if p.parent.name not in (JOBS_FOLDER, EXPORTS_FOLDER)]
    files += list((home / "checkpoints").glob("*/bench/*.json"))
    return [p for p in files if not p.name.startswith(".")]


def load_results(home: Path) -> list[dict]:
    """Every stored result in the workspace, oldest first, each with its ``file``.

    Each record has ``kind`` (``benchmark`` or ``perplexity``), ``model``, ``checkpoint``
    (``None`` or ``"step-N"``), ``template``, ``created``, ``key``, and either ``benchmark``,
    ``scorer``, ``score``, ``n``, ``items`` or ``dataset``, ``perplexity``, ``tokens``.
    Several records can share a table cell (different settings or scorers): the newest wins.
    """
    records = []
    for path in result_files(home):
        record = read_json(path, MAX_RESULT_BYTES)
        problem = result_problem(record)
        if problem:
            warn_skipped(path, problem)  # one damaged or foreign file never empties the table
            continue
        record["file"] = str(path)
        records.append(record)
    return sorted(records, key=lambda r: (r.get("created") or "", r["file"]))


VALUE_KEYS = {"benchmark": "score", "perplexity": "perplexity", "reward": "reward"}  # a result's number, by kind


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def result_problem(record) -> str | None:
    """Why a stored result cannot be shown (wrong types, missing fields), or ``None`` when it can.

    Result files may come from elsewhere (a shared workspace, a copied run): the table and the
    sorting need these fields with these types.
    """
    if not isinstance(record, dict) or not record:
        return "not a JSON object, or unreadable"
    kind = record.get("kind")
    if kind not in VALUE_KEYS:
        return "kind is not benchmark, perplexity or reward"
    needed = {"model": (str,), "created": (str, type(None)), "checkpoint": (str, type(None)),
              "model_id": (str, type(None)), "scorer": (str, type(None)), "template": (str, type(None))}
    needed |= {"benchmark": {"benchmark": (str,)}, "perplexity": {"dataset": (str,)},
               "reward": {"prompts": (str,), "reward_model": (str,), "reward_model_name": (str,)}}[kind]
    for key, kinds in needed.items():
        value = record.get(key)
        if not isinstance(value, kinds):
            return f"{key} is {type(value).__name__}, not {' or '.join(k.__name__ for k in kinds)}"
    value_key = VALUE_KEYS[kind]
    if not _number(record.get(value_key)):
        return f"{value_key} is not a number"
    return None
