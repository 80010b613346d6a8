"""Model references: resolve and list them.

A reference is ``default`` (SmolLM2-135M-Instruct, see :mod:`.default_model`), a Hugging Face model folder, a model in
the local Hugging Face cache, a Hub id ``org/name[@revision]`` (downloaded once into that
cache by :mod:`.hub`), or a run name in the workspace's ``checkpoints/``. Only a Hub id that is
not on disk yet reaches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from tui_ft.engine.files import UnsafeFileError, read_regular, warn_skipped
from tui_ft.engine.models.default_model import DEFAULT_REF, Progress, default_model_dir, ensure_default_model
from tui_ft.engine.models.hub import (
    Display,
    DownloadStopped,
    HubError,
    HubId,
    download_message,
    fetch_model,
    hub_cache_dir,
    parse_hub_id,
    weights_complete,
)
from tui_ft.engine.models.model_folder import ModelError, has_final_weights, is_model_folder
from tui_ft.engine.workspace import CHECKPOINTS, RUN_FILE, find_run_dir

REWARD_METHOD = "reward"  # a run of this method is a reward model (training/reward.py), not a language model
MAX_RUN_CHAIN = 16  # a run trained on a run trained on a run...: deeper than this is a loop


@dataclass
class ModelRef:
    """A resolved model reference.

    Attributes:
        ref: The reference as the user gave it.
        path: The local folder of the base weights.
        kind: ``default``, ``folder``, ``hf-cache`` (a model in the Hugging Face cache, downloaded
            now or before) or ``run``.
        adapter: A PEFT adapter folder to apply on top of ``path`` (LoRA runs).
        template: The template the run trained with, when the reference is a run.
        revision: The commit of an ``hf-cache`` model (its snapshot folder's name).
    """

    ref: str
    path: Path
    kind: str
    adapter: Path | None = None
    template: str | None = None
    revision: str | None = None


def hf_cache_models() -> list[tuple[str, Path]]:
    """Models already in the local Hugging Face cache with all their weights, as ``(repo_id, snapshot folder)``.

    A snapshot holding only the config and tokenizer (a run created, its weights not fetched
    yet) is left out.
    """
    root = hub_cache_dir()
    found = []
    for repo in sorted(root.glob("models--*")) if root.is_dir() else []:
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for snapshot in snapshots:
            if weights_complete(snapshot):
                found.append((repo.name[len("models--") :].replace("--", "/"), snapshot))
                break
    return found


def resolve_model(ref: str, home: Path | None = None, convert: bool = True, progress: Progress | None = None,
                  *, weights: bool | None = None, offline: bool = False, _runs: tuple[Path, ...] = ()) -> ModelRef:
    """Resolve a reference to local folders; only a Hub id not on disk downloads (see :mod:`.hub`).

    A path or a run of that name always wins over a Hub id; ``./org/name`` is always a path.

    Args:
        ref: ``default``, a model folder, a cached repo id, a Hub id ``org/name[@revision]``, or
            a run name.
        home: The workspace holding ``checkpoints/``.
        convert: Convert the default model now if it is not converted yet.
        progress: Called with progress while converting or downloading.
        weights: Download a Hub model's weights now (default: as ``convert``); ``False`` fetches
            its config and tokenizer only, which is what checking and creating a run need.
        offline: Never reach the network (listing models); ``HF_HUB_OFFLINE`` does the same.
        _runs: The runs whose ``model`` led here (a run trained on a run): a loop is refused.
    """
    home = Path(home or Path.cwd())
    if ref == DEFAULT_REF:
        path = ensure_default_model(progress) if convert else default_model_dir()
        return ModelRef(ref, path, "default")
    run_dir = find_run_dir(ref, home)
    if run_dir is not None:
        return _resolve_run(ref, run_dir, home, convert, progress, _runs, offline)
    path = Path(ref).expanduser()
    if path.is_dir():
        if is_model_folder(path):
            return ModelRef(ref, path.resolve(), "folder")
        raise ModelError(f"{ref}: not a model folder (needs config.json and model.safetensors)")
    for repo_id, snapshot in hf_cache_models():
        if repo_id == ref:
            return ModelRef(ref, snapshot, "hf-cache", revision=snapshot.name)
    hub = None if path.exists() else parse_hub_id(ref)
    if hub is not None:
        return _resolve_hub(ref, hub, convert if weights is None else weights, offline, progress)
    raise ModelError(f"{ref}: unknown model (not 'default', a model folder, a cached model, a run or a Hub id org/name)")


def _resolve_hub(ref: str, hub: HubId, weights: bool, offline: bool, progress: Progress | None) -> ModelRef:
    try:
        snapshot = fetch_model(hub, weights=weights, allow_network=not offline,
                               display=_progress_display(progress) if progress else None)
    except HubError as error:
        raise ModelError(str(error)) from None
    return ModelRef(ref, snapshot, "hf-cache", revision=snapshot.name)


def _progress_display(progress: Progress) -> Display:
    """A download shown through a ``(what, fraction)`` progress callback."""

    @contextmanager
    def display(what: str):
        yield lambda done, total: progress(download_message(what, done, total), done / total if total else 0.0)

    return display


def fetch_run_weights(config: dict, display: Display | None = None, should_stop: Callable[[], bool] | None = None) -> None:
    """Download the weights of a run's Hub model into the snapshot its ``run.json`` names, if missing.

    ``create_run`` fetched only the config and tokenizer (a run is created in seconds, and the
    Train form never waits on a 16 GB download); the run's worker calls this before it loads
    the model, and ``export`` before it merges. A run whose model is not a Hub id is left alone.

    Raises:
        ModelError: The download failed (one line saying what to do).
        DownloadStopped: ``should_stop`` turned true; what was fetched is kept for next time.
    """
    model, revision, model_path = config.get("model"), config.get("model_revision"), config.get("model_path")
    hub = parse_hub_id(model) if isinstance(model, str) else None
    if hub is None or not isinstance(revision, str) or not isinstance(model_path, str):
        return
    snapshot = Path(model_path)
    if weights_complete(snapshot):
        return
    # The cache the run was created with, wherever HF_HOME points now: model_path must stay valid.
    if (snapshot.name, snapshot.parent.name, snapshot.parents[1].name) != (
            revision, "snapshots", "models--" + hub.repo_id.replace("/", "--")):
        raise ModelError(f"run.json: model_path {model_path} is not the Hugging Face cache folder of "
                         f"{hub.repo_id} at {revision}")
    try:
        fetch_model(HubId(hub.repo_id, revision), weights=True, cache_dir=snapshot.parents[2], display=display,
                    should_stop=should_stop)
    except DownloadStopped:
        raise
    except HubError as error:
        raise ModelError(str(error)) from None


def read_run_json(run_dir: Path) -> dict:
    """A run folder's ``run.json`` as a dict (a regular file of a few MB at most).

    Raises:
        ModelError: It cannot be read, is not JSON, or not a JSON object (one line naming it).
    """
    path = Path(run_dir) / RUN_FILE
    try:
        config = orjson.loads(read_regular(path))
    except UnsafeFileError as error:  # a FIFO, a device, too large: one line naming it
        raise ModelError(str(error)) from None
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror or error})") from None
    except orjson.JSONDecodeError:
        raise ModelError(f"{path}: not valid JSON") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: not a JSON object")
    return config


def _resolve_run(ref: str, run_dir: Path, home: Path, convert: bool, progress: Progress | None,
                 runs: tuple[Path, ...] = (), offline: bool = False, config: dict | None = None) -> ModelRef:
    config = read_run_json(run_dir) if config is None else config
    if config.get("method") == REWARD_METHOD:
        raise ModelError(f"{ref}: a reward model: it scores replies (tui-ft score {ref} --prompt P --reply R), "
                         "it does not chat or answer")
    template = config.get("template")
    if template is not None and not isinstance(template, str):
        raise ModelError(f"{ref}: run.json's template must be text, got {type(template).__name__}")
    if is_model_folder(run_dir / "model"):
        return ModelRef(ref, run_dir / "model", "run", None, template)
    if (run_dir / "adapter" / "adapter_config.json").is_file():
        model, model_path = config.get("model"), config.get("model_path")
        if model:
            if not isinstance(model, str):
                raise ModelError(f"{ref}: run.json's model must be a model reference (text), got {type(model).__name__}")
            here = run_dir.resolve()
            if here in runs or len(runs) >= MAX_RUN_CHAIN:
                raise ModelError(f"{ref}: run.json's model {model!r} leads back to a run on the way to it (a loop)")
            base = resolve_model(pinned_model(model, config.get("model_revision")), home, convert, progress, offline=offline,
                                 _runs=(*runs, here))
            return ModelRef(ref, base.path, "run", run_dir / "adapter", template)
        if not isinstance(model_path, str) or not model_path:
            raise ModelError(f"{ref}: run.json names no base model (model or model_path)")
        return ModelRef(ref, Path(model_path), "run", run_dir / "adapter", template)
    raise ModelError(f"{ref}: the run has no final weights yet (no adapter/ or model/); wait for it to finish")


def pinned_model(model, revision) -> str:
    """A run's Hub model at the commit the run recorded (``org/name@commit``): its branch may have moved since."""
    hub = parse_hub_id(model) if isinstance(model, str) and isinstance(revision, str) and revision else None
    return f"{hub.repo_id}@{revision}" if hub is not None else model


def list_models(home: Path | None = None) -> list[dict]:
    """Every model the user can pick: default, cached models, and runs with final weights.

    A run whose ``run.json`` cannot name its base model (malformed, wrong types, a loop of runs)
    is left out with one line on stderr naming it; the others are listed.
    """
    home = Path(home or Path.cwd())
    models = [{"ref": DEFAULT_REF, "path": str(default_model_dir()), "kind": "default"}]
    models += [{"ref": repo, "path": str(path), "kind": "hf-cache"} for repo, path in hf_cache_models()]
    runs = home / CHECKPOINTS
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not (run_dir / RUN_FILE).is_file() or not has_final_weights(run_dir):
            continue  # not a run, or still training: nothing to pick yet
        try:
            config = read_run_json(run_dir)
            if config.get("method") == REWARD_METHOD:
                continue  # it scores replies: not a model to chat with or to benchmark
            resolved = _resolve_run(run_dir.name, run_dir, home, convert=False, progress=None, offline=True,
                                    config=config)
        except (ModelError, OSError, ValueError, TypeError, KeyError, RecursionError) as error:
            warn_skipped(run_dir / RUN_FILE, str(error))
            continue
        models.append({"ref": run_dir.name, "path": str(resolved.path), "kind": "run",
                       "adapter": str(resolved.adapter) if resolved.adapter else None})
    return models


def list_reward_models(home: Path) -> list[str]:
    """The names of the workspace's finished reward runs (``--method reward``): the judges a user can pick."""
    runs = Path(home) / CHECKPOINTS
    names = []
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if (run_dir / RUN_FILE).is_file() and has_final_weights(run_dir):
            try:
                if read_run_json(run_dir).get("method") == REWARD_METHOD:
                    names.append(run_dir.name)
            except ModelError:
                continue  # a damaged run.json: list_models names it once
    return names


