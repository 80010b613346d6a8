"""Datasets from the Hugging Face Hub: ``hf:org/name[@revision][:split]`` fetched into the ordinary HF cache.

Only a split's data files are downloaded (Parquet, JSON Lines, JSON, CSV), through
``huggingface_hub`` with the same progress display, offline rule (``HF_HUB_OFFLINE``: the cache
only) and one-line errors as models from the Hub (:mod:`tui_ft.engine.models.hub`). The file is
then read by the project's own readers: the same format detection, the same ``file:line``
problems. A split stored as several Parquet or JSON Lines shards is joined once into one file
in tui-ft's cache (``<cache>/datasets/org--name/<commit>/<split>.<suffix>``), since a dataset is
one file everywhere else in tui-ft.

A split's files are found as the ``datasets`` library finds them by default: a folder named
after the split, or a file whose name starts with it (``data/train-00000-of-00001.parquet``,
``test.jsonl``); a repository with no split names at all is one ``train`` split.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tui_ft.engine.data.readers import DatasetError, Problem
from tui_ft.engine.models.hub import HubError, HubId, hub_cache_dir, hub_endpoint, hub_offline, parse_hub_id

PREFIX = "hf:"
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
JOINABLE = (".parquet", ".jsonl")  # shards of these are joined into one file; CSV and JSON are not
# The datasets library's own metadata, not data.
NOT_DATA = {"dataset_infos.json", "dataset_info.json", "dataset_dict.json", "state.json"}
SPLIT_NAMES = ("train", "validation", "valid", "val", "dev", "test", "eval")
DEFAULT_SPLIT = "train"


@dataclass(frozen=True)
class HubDataset:
    """A dataset reference: the repo (and revision) and the split."""

    hub: HubId
    split: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.hub}:{self.split}"


def is_hub_dataset(ref) -> bool:
    """True for a reference written ``hf:...`` (checked further by :func:`parse_hub_dataset`)."""
    return isinstance(ref, str) and ref.startswith(PREFIX)


def parse_hub_dataset(ref: str) -> HubDataset:
    """``hf:org/name[@revision][:split]`` parsed (split ``train`` by default).

    Raises:
        DatasetError: Not that shape (one problem naming it).
    """
    body = ref[len(PREFIX):].strip()
    split = DEFAULT_SPLIT
    if ":" in body:
        body, split = body.rsplit(":", 1)
    hub = parse_hub_id(body)
    if hub is None or not re.fullmatch(r"[\w.-]+", split):
        raise DatasetError([Problem(ref, 0, "not a Hub dataset reference (hf:org/name, hf:org/name:split or "
                                            "hf:org/name@revision:split)")])
    return HubDataset(hub, split)


def fetch_dataset(ref: str, cache: Path | None = None, offline: bool = False) -> Path:
    """The local file holding the split ``ref`` names, downloaded (and joined) if needed; ``offline``: the cache only.

    Raises:
        DatasetError: One problem, one line saying what to do (a name, a split, the network,
            offline mode, a token, files tui-ft cannot read).
    """
    return fetch_pinned(ref, cache, offline)[0]


def fetch_pinned(ref: str, cache: Path | None = None, offline: bool = False) -> tuple[Path, str]:
    """:func:`fetch_dataset`, and the reference pinned at the commit fetched (``hf:org/name@commit:split``).

    A run records both: the file it reads, and where it came from (a branch may move on).
    """
    dataset = parse_hub_dataset(ref)
    cache = Path(cache or hub_cache_dir()).expanduser()
    try:
        snapshot, names = _split_files(dataset, cache, offline or hub_offline())
    except HubError as error:
        raise DatasetError([Problem(ref, 0, str(error).removeprefix(f"{dataset.hub}: "))]) from None
    pinned = str(HubDataset(HubId(dataset.hub.repo_id, snapshot.name), dataset.split))
    suffixes = {PurePosixPath(name).suffix for name in names}
    if len(names) == 1:
        return snapshot / names[0], pinned
    if len(suffixes) > 1 or not suffixes <= set(JOINABLE):
        kinds = ", ".join(sorted(suffixes))
        raise DatasetError([Problem(ref, 0, f"split {dataset.split!r} is {len(names)} files ({kinds}): tui-ft joins "
                                            "Parquet or JSON Lines shards only; download it and pick one file")])
    return _joined(dataset, snapshot, names), pinned


def _split_files(dataset: HubDataset, cache: Path, offline: bool) -> tuple[Path, list[str]]:
    """The snapshot folder and the split's data files in it (relative names), fetched when missing."""
    import httpx2
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from tui_ft.engine.models.hub import current_display, explain, quiet_bar

    hub = dataset.hub
    options = {"repo_id": hub.repo_id, "repo_type": "dataset", "revision": hub.revision, "cache_dir": cache,
               "tqdm_class": quiet_bar()}
    try:
        if offline:
            try:
                snapshot = Path(snapshot_download(**options, local_files_only=True))
            except LocalEntryNotFoundError:
                raise HubError(f"{hub}: not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set, so nothing "
                               "is downloaded: unset HF_HUB_OFFLINE to download it") from None
            files = [str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()]
            return snapshot, _pick(dataset, files, cached=True)
        api = HfApi(endpoint=hub_endpoint())
        listed = api.list_repo_files(hub.repo_id, repo_type="dataset", revision=hub.revision)
        names = _pick(dataset, listed, cached=False)
        with current_display()(f"{hub}: {dataset.split} split"):
            snapshot = Path(snapshot_download(**options, allow_patterns=names, endpoint=hub_endpoint()))
        return snapshot, names
    except (OSError, ValueError, httpx2.HTTPError, EntryNotFoundError) as error:
        raise HubError(explain(error, hub, "dataset")) from None


def _pick(dataset: HubDataset, files: list[str], cached: bool) -> list[str]:
    """The data files of the split, sorted (shards in order); :class:`HubError` when there are none."""
    data = sorted(name for name in files if PurePosixPath(name).suffix in DATA_SUFFIXES
                  and PurePosixPath(name).name not in NOT_DATA and not name.startswith("."))
    if not data:
        where = "in the cached copy" if cached else "in the repository"
        raise HubError(f"{dataset.hub}: no data files ({', '.join(DATA_SUFFIXES)}) {where}")
    by_split: dict[str, list[str]] = {}
    for name in data:
        by_split.setdefault(_split_of(name) or DEFAULT_SPLIT, []).append(name)
    if dataset.split in by_split:
        return by_split[dataset.split]
    found = ", ".join(sorted(by_split))
    cached_note = " (in the cached copy; unset HF_HUB_OFFLINE to look on the Hub)" if cached else ""
    raise HubError(f"{dataset.hub}: no split {dataset.split!r}; it has {found}{cached_note}")


def _split_of(name: str) -> str | None:
    """The split a data file belongs to by its path, or ``None`` when the path names none.

    A folder named after a split (``test/part-0.parquet``), a file named after one
    (``validation.jsonl``, ``train-3.json``), or a Hub-converted shard (``train_prefs-00000-of-00001``).
    """
    path = PurePosixPath(name)
    for part in reversed(path.parts[:-1]):
        if part in SPLIT_NAMES:
            return part
    stem = path.name.split(".")[0]
    shard = re.fullmatch(r"(\w+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?", stem)
    if shard:
        return shard[1]
    named = re.fullmatch(r"([A-Za-z]+)(?:[-_.]\w*)?", stem)
    return named[1] if named and named[1] in SPLIT_NAMES else None


def _joined(dataset: HubDataset, snapshot: Path, names: list[str]) -> Path:
    """One file holding the split's shards in order, written once next to tui-ft's other caches."""
    from tui_ft.engine.models.default_model import cache_dir

    suffix = PurePosixPath(names[0]).suffix
    target = cache_dir() / "datasets" / dataset.hub.repo_id.replace("/", "--") / snapshot.name / f"{dataset.split}{suffix}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(snapshot / name) for name in names]
        pq.write_table(pa.concat_tables(tables, promote_options="default"), staging)
    else:
        with open(staging, "wb") as out:
            for name in names:
                data = (snapshot / name).read_bytes()
                out.write(data if data.endswith(b"\n") or not data else data + b"\n")
    os.replace(staging, target)  # atomic: a reader never sees half the shards
    return target
