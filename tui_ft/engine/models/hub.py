"""Models from the Hugging Face Hub: ``org/name[@revision]`` downloaded into the ordinary HF cache.

A download has two steps. The small files (config, tokenizer, generation config, the
safetensors index, the chat template) come first: a run can be checked and created from them
in seconds. The weights (safetensors only, never a pickle) come when the model is loaded: in
the CLI at once, with a bar; for a run, in its detached worker, with the bytes in
``status.json``.

``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` are read
when a model is resolved (huggingface_hub reads most of them once, when it is imported), so a
dashboard or a test that sets them later is honoured. Importing this module loads nothing
beyond the standard library; huggingface_hub is imported by the functions that download.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Everything a model folder needs besides its weights; top-level files only (see SUBFOLDERS).
SMALL_FILES = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
SUBFOLDERS = ["*/*"]  # original/, onnx/, gguf/...: other formats of the same weights
DEFAULT_ENDPOINT = "https://huggingface.co"
READ_BYTES = 1 << 20  # one read of a weights download: the stop and progress granularity
LOGIN = "set HF_TOKEN or run `hf auth login`"
_HUB_ID = re.compile(r"(?P<repo>\w[\w.-]*/\w[\w.-]*)(?:@(?P<revision>[^\s@]+))?")

ByteProgress = Callable[[int, "int | None"], None]  # (bytes done, bytes in all: None while unknown)
Display = Callable[[str], AbstractContextManager[ByteProgress]]  # shows one download, given what it is
_DISPLAY: ContextVar[Display | None] = ContextVar("tui_ft_download_display", default=None)


class HubError(Exception):
    """A Hub model that cannot be fetched; the message is one line saying what to do."""


class DownloadStopped(HubError):
    """The download was asked to stop (a run stopped while it downloaded); what was fetched is kept."""


@dataclass(frozen=True)
class HubId:
    """A Hub model: ``repo_id`` (``org/name``) and an optional branch, tag or commit."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def parse_hub_id(ref: str) -> HubId | None:
    """``ref`` as a Hub id when it has that shape (``org/name`` or ``org/name@revision``), else ``None``.

    Only the shape is checked: the caller has already ruled out a folder or a run of that name.
    ``./org/name``, ``/abs/path`` and ``~/x`` never match.
    """
    match = _HUB_ID.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(match["repo"])  # the Hub's own rules: no "--" or "..", 96 characters at most
    except HFValidationError:
        return None
    return HubId(match["repo"], match["revision"])


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it, read now."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("HF_HOME") or Path(xdg) / "huggingface").expanduser() / "hub"


def hub_endpoint() -> str:
    """``$HF_ENDPOINT`` (a mirror, or a test's stand-in Hub), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def weight_files(folder: Path) -> list[str]:
    """The safetensors files a model folder needs: the shards its index names, else ``model.safetensors``."""
    try:
        weight_map = orjson.loads((Path(folder) / INDEX_FILE).read_bytes()).get("weight_map", {})
    except (OSError, AttributeError, orjson.JSONDecodeError):
        return [SINGLE_FILE]
    shards = sorted({name for name in weight_map.values() if isinstance(name, str)}) if isinstance(weight_map, dict) else []
    return shards or [SINGLE_FILE]


def weights_complete(folder: Path) -> bool:
    """True when every weight file of ``folder`` is there (a snapshot may hold only the small files)."""
    return (Path(folder) / "config.json").is_file() and all((Path(folder) / name).is_file() for name in weight_files(folder))


def download_message(what: str, done: int, total: int | None) -> str:
    """``downloading Qwen/Qwen2.5-7B: 1.2 GB of 15.2 GB``, for a status line."""
    from rich.filesize import decimal

    return f"{what}: {decimal(done)} of {decimal(total)}" if total else f"{what}: {decimal(done)}"


def downloaded_message(what: str, done: int, seconds: float) -> str:
    """``downloaded Qwen/Qwen2.5-7B: 15.2 GB in 212 s``, once a download is over."""
    from rich.filesize import decimal

    return f"{what.replace('downloading', 'downloaded', 1)}: {decimal(done)} in {seconds:.0f} s"


@contextmanager
def showing_downloads(display: Display) -> Iterator[None]:
    """Show every download started inside the block with ``display`` (the CLI's bar)."""
    token = _DISPLAY.set(display)
    try:
        yield
    finally:
        _DISPLAY.reset(token)


@contextmanager
def _silent(_what: str) -> Iterator[ByteProgress]:
    yield lambda _done, _total: None


def current_display() -> Display:
    """The display :func:`showing_downloads` set for this context, else one that shows nothing."""
    return _DISPLAY.get() or _silent


def fetch_model(hub: HubId, *, weights: bool, allow_network: bool = True, cache_dir: Path | None = None,
                display: Display | None = None, should_stop: Callable[[], bool] | None = None) -> Path:
    """The snapshot folder of ``hub`` in the Hugging Face cache, downloading what is missing.

    Args:
        hub: The model.
        weights: Fetch the weights too; ``False`` fetches only the config and tokenizer files.
        allow_network: ``False`` looks in the cache only (``HF_HUB_OFFLINE`` does the same).
        cache_dir: The hub cache; default :func:`hub_cache_dir`.
        display: Shows each download; default the one set by :func:`showing_downloads`, else none.
        should_stop: Polled while the weights download; true raises :class:`DownloadStopped`.

    Raises:
        HubError: One line saying what to do (a token, a name, the network, offline mode).
    """
    import httpx2
    from huggingface_hub.errors import EntryNotFoundError

    cache = Path(cache_dir or hub_cache_dir()).expanduser()
    display = display or _DISPLAY.get() or _silent
    offline = hub_offline() or not allow_network
    try:
        snapshot = _small_files(hub, cache, offline, display)
        if weights and not weights_complete(snapshot):
            if offline:
                raise HubError(f"{hub}: its weights are not all in the Hugging Face cache ({cache}) and "
                               "HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE to download them")
            _download_weights(hub, snapshot, display, should_stop)
    except (OSError, ValueError, httpx2.HTTPError, EntryNotFoundError) as error:
        # huggingface_hub's HTTP errors are OSErrors; httpx's are its own; a full disk is an OSError.
        raise HubError(explain(error, hub)) from None
    return snapshot


def _small_files(hub: HubId, cache: Path, offline: bool, display: Display) -> Path:
    """The snapshot with the config and tokenizer files: from the cache, else from the Hub."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    options = {"repo_id": hub.repo_id, "revision": hub.revision, "cache_dir": cache, "allow_patterns": SMALL_FILES,
               "ignore_patterns": SUBFOLDERS, "tqdm_class": quiet_bar()}
    try:
        # A revision already fetched is used as it is: no request at all (a run resolves offline).
        snapshot = Path(snapshot_download(**options, local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise HubError(f"{hub}: not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set, so nothing "
                           "is downloaded: unset HF_HUB_OFFLINE to download it") from None
        with display(f"{hub}: config and tokenizer"):
            snapshot = Path(snapshot_download(**options, endpoint=hub_endpoint()))
    if not (snapshot / "config.json").is_file():
        raise HubError(f"{hub}: not a model repository (no config.json)")
    _refuse_without_safetensors(hub, snapshot, cache)
    return snapshot


def _refuse_without_safetensors(hub: HubId, snapshot: Path, cache: Path) -> None:
    """One line at once for a repo with pickled weights only (its file list is cached by snapshot_download)."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        names = {entry.path for entry in get_cached_repo_tree(hub.repo_id, revision=snapshot.name, cache_dir=cache)}
    except CachedRepoTreeNotFoundError:
        return  # not listed here: a missing model.safetensors is found when the weights are fetched
    if INDEX_FILE not in names and SINGLE_FILE not in names:
        raise HubError(_no_safetensors(hub))


def _no_safetensors(hub: HubId) -> str:
    return (f"{hub}: no safetensors weights ({SINGLE_FILE} or {INDEX_FILE}); tui-ft does not load pickled weights "
            "(*.bin, *.pt): pick a repo that has safetensors, or convert it")


def _download_weights(hub: HubId, snapshot: Path, display: Display, should_stop: Callable[[], bool] | None) -> None:
    """Fetch the missing safetensors files of ``snapshot`` one by one, each resumable."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    commit, storage, endpoint = snapshot.name, snapshot.parents[1], hub_endpoint()
    names = weight_files(snapshot)
    missing = [name for name in names if not (snapshot / name).is_file()]
    try:
        metadata = {name: get_hf_file_metadata(hf_hub_url(hub.repo_id, name, revision=commit, endpoint=endpoint),
                                               endpoint=endpoint) for name in missing}
    except EntryNotFoundError:
        raise HubError(_no_safetensors(hub)) from None
    present = sum((snapshot / name).stat().st_size for name in names if name not in missing)
    sizes = [meta.size for meta in metadata.values()]
    total = None if None in sizes else present + sum(sizes)
    partial = sum(_partial_file(storage, meta).stat().st_size for meta in metadata.values() if _partial_file(storage, meta).is_file())
    _check_disk_space(hub, storage, sum(size or 0 for size in sizes) - partial)
    with display(f"downloading {hub.repo_id}") as report:
        done = present
        report(done + partial, total)  # a resumed download starts where the last one stopped
        for name in missing:
            done += _fetch_blob(storage, metadata[name], endpoint,
                                lambda position, before=done: report(before + position, total), should_stop)
            _link_into_snapshot(hub, name, commit, storage.parent, endpoint)
        report(done, total)


def _fetch_blob(storage: Path, meta, endpoint: str, report: Callable[[int], None],
                should_stop: Callable[[], bool] | None) -> int:
    """Download one file to ``blobs/<etag>``, resuming ``blobs/<etag>.incomplete``; returns its size.

    Hand-written around huggingface_hub's ``http_get`` because huggingface_hub 2.x deletes a
    partial file when a download fails (it resumes only within one call, after a dropped
    connection): a 16 GB download stopped or cut off would start again from zero. The partial
    file is named as older huggingface_hub versions named theirs, and kept until complete.
    """
    from huggingface_hub import constants
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers, silent_tqdm

    # Reads of 1 MB at most (huggingface_hub's are 10 MB): a stop request is acted on, and the
    # bytes shown move, every megabyte even on a slow link.
    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, READ_BYTES)
    blob = storage / "blobs" / meta.etag
    if blob.is_file():
        return blob.stat().st_size
    partial = _partial_file(storage, meta)
    lock = storage.parent / ".locks" / storage.name / f"{meta.etag}.resume.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    blob.parent.mkdir(parents=True, exist_ok=True)
    headers = build_hf_headers()  # HF_TOKEN, read now
    if urlsplit(meta.location).hostname != urlsplit(endpoint).hostname:
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the Hub
    with WeakFileLock(lock):  # another process (a second rank, a chat) fetching the same file waits
        if blob.is_file():
            return blob.stat().st_size
        if partial.is_file() and meta.size is not None and partial.stat().st_size > meta.size:
            partial.unlink()  # longer than the file: not a prefix of it
        with open(partial, "ab") as file:
            file.seek(0, os.SEEK_END)
            http_get(meta.location, _ReportingFile(file, report, should_stop), resume_size=file.tell(), headers=headers,
                     expected_size=meta.size, tqdm_class=silent_tqdm)
        os.replace(partial, blob)
    return blob.stat().st_size


def _partial_file(storage: Path, meta) -> Path:
    return storage / "blobs" / f"{meta.etag}.incomplete"


def _link_into_snapshot(hub: HubId, name: str, commit: str, cache: Path, endpoint: str) -> None:
    """Add a fetched blob to the snapshot; huggingface_hub finds the blob and only links it (no download)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import silent_tqdm

    hf_hub_download(hub.repo_id, name, revision=commit, cache_dir=cache, endpoint=endpoint, tqdm_class=silent_tqdm)


class _ReportingFile:
    """The partial file as ``http_get`` writes it: reports its size after each chunk, stops when asked."""

    def __init__(self, file, report: Callable[[int], None], should_stop: Callable[[], bool] | None):
        self._file, self._report, self._should_stop = file, report, should_stop

    def write(self, data: bytes) -> int:
        if self._should_stop is not None and self._should_stop():
            raise DownloadStopped("stopped while downloading the weights; what was fetched is kept")
        written = self._file.write(data)
        self._report(self._file.tell())
        return written

    def __getattr__(self, name: str):
        return getattr(self._file, name)  # seek, tell, truncate: http_get rewinds when a server ignores Range


def _check_disk_space(hub: HubId, storage: Path, needed: int) -> None:
    storage.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(storage).free
    if needed > free:
        from rich.filesize import decimal

        raise HubError(f"{hub}: needs {decimal(needed)} in {storage.parent}, which has {decimal(free)} free: "
                       "free some space or set HF_HOME to a larger disk")


def quiet_bar():
    """A tqdm that draws nothing: huggingface_hub's own bars would garble ours and the dashboard's."""
    from tqdm.auto import tqdm

    class QuietBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "disable": True})

    return QuietBar


def explain(error: BaseException, hub: HubId, what: str = "model") -> str:
    """One line for a failed Hub request: what went wrong and what to do (``what``: a model or a dataset)."""
    import httpx2
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hub_endpoint()
    if isinstance(error, LocalEntryNotFoundError) and error.__cause__ is not None:
        error = error.__cause__  # snapshot_download looked in the cache after the request failed
    status = getattr(getattr(error, "response", None), "status_code", None)
    page = f"{endpoint}/{'datasets/' if what == 'dataset' else ''}{hub.repo_id}"
    if isinstance(error, RevisionNotFoundError):
        return f"{hub}: {hub.repo_id} has no revision {hub.revision!r} on {endpoint}: check the branch, tag or commit"
    if isinstance(error, GatedRepoError) or status in (401, 403):
        if get_token() is not None:
            return (f"{hub}: {endpoint} refused your token ({status}): check HF_TOKEN, and for a gated {what} accept "
                    f"its licence on {page}")
        return f"{hub}: private or gated on {endpoint} ({status}): {LOGIN}; accept the {what}'s licence on {page}"
    if isinstance(error, RepositoryNotFoundError) or status == 404:
        return f"{hub}: no such folder here and no such {what} on {endpoint} (404): check the name"
    if isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError)):
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        return (f"{hub}: cannot reach {endpoint} ({reason}): check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 "
                f"to use only cached {what}s")
    if isinstance(error, HfHubHTTPError) and status is not None:
        return f"{hub}: {endpoint} answered {status}: try again later (a download started again resumes)"
    first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return f"{hub}: download failed: {first}"
