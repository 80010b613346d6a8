"""Models by Hub id (``org/name[@revision]``) against a stand-in Hub served on 127.0.0.1 (``tests/hub_standin.py``).

``HF_ENDPOINT`` points at it and the Hugging Face cache lives in ``tmp_path``: nothing leaves
the machine (a guard refuses any connection elsewhere).
"""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from hub_standin import TOKEN, hub, hub_cache, only_loopback, tiny_repo_files  # noqa: F401 (fixtures)

from tui_ft.engine.models import ModelError, fetch_run_weights, resolve_model, showing_downloads
from tui_ft.engine.models.hub import weights_complete


def test_a_hub_id_downloads_safetensors_into_the_hf_cache_and_loads(hub, tiny_repo_files, tmp_path):
    from tui_ft.engine.models import load_model

    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    resolved = resolve_model("acme/tiny", tmp_path)
    expected = hub_cache(tmp_path) / "models--acme--tiny" / "snapshots" / sha
    assert (resolved.path, resolved.kind, resolved.revision) == (expected, "hf-cache", sha)
    assert (expected / "model.safetensors").read_bytes() == tiny_repo_files["model.safetensors"]
    assert (expected / "model.safetensors").is_symlink()  # the ordinary cache layout: a link to blobs/<etag>
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path}
    assert "model.safetensors" in fetched and "tokenizer.json" in fetched
    assert not fetched & {"pytorch_model.bin", "params.json", "README.md"}  # no pickle, no subfolder, no docs
    assert not any("x-xet" in key for _, _, headers in hub.requests for key in headers)
    model, tokenizer = load_model(resolved)
    assert model.config.num_hidden_layers == 2 and tokenizer("hi")["input_ids"]
    count = len(hub.requests)
    assert resolve_model("acme/tiny", tmp_path).path == expected  # cached now: no request at all
    assert len(hub.requests) == count


def test_a_revision_is_fetched_by_branch_and_by_commit(hub, tiny_repo_files, tmp_path):
    main = hub.add_repo("acme/tiny", tiny_repo_files)
    changed = dict(tiny_repo_files, **{"generation_config.json": b'{"max_new_tokens": 7}'})
    v2 = hub.add_repo("acme/tiny", changed, branch="v2")
    resolved = resolve_model("acme/tiny@v2", tmp_path)
    assert resolved.revision == v2 and resolved.path.name == v2
    assert json.loads((resolved.path / "generation_config.json").read_text()) == {"max_new_tokens": 7}
    by_commit = resolve_model(f"acme/tiny@{main}", tmp_path)
    assert by_commit.path.name == main and weights_complete(by_commit.path)


def test_a_folder_or_run_of_that_name_wins_and_dot_slash_is_always_a_path(hub, tiny_model_dir, tmp_path,
                                                                          monkeypatch):
    shutil.copytree(tiny_model_dir, tmp_path / "acme" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("acme/tiny", tmp_path).kind == "folder"
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model("./acme/other", tmp_path)
    assert hub.requests == []


def test_a_repo_without_safetensors_is_refused_in_one_line(hub, tiny_repo_files, tmp_path):
    pickles = {k: v for k, v in tiny_repo_files.items() if not k.endswith(".safetensors")}
    hub.add_repo("acme/pickles", pickles)
    with pytest.raises(ModelError) as caught:
        resolve_model("acme/pickles", tmp_path)
    assert str(caught.value).startswith("acme/pickles: no safetensors weights") and "\n" not in str(caught.value)
    assert hub.fetched("pytorch_model.bin") == []


@pytest.mark.parametrize(("repo", "ref", "expected"), [
    ("acme/private", "acme/private", "acme/private: private or gated on {url} (401): set HF_TOKEN or run `hf auth login`"),
    ("acme/gated", "acme/gated", "acme/gated: private or gated on {url} (401): set HF_TOKEN or run `hf auth login`"),
    ("acme/tiny", "acme/nothing", "acme/nothing: no such folder here and no such model on {url} (404): check the name"),
    ("acme/tiny", "acme/tiny@v9", "acme/tiny@v9: acme/tiny has no revision 'v9' on {url}: check the branch, tag or commit"),
])
def test_refusals_are_one_line_saying_what_to_do(hub, tiny_repo_files, tmp_path, repo, ref, expected):
    hub.add_repo(repo, tiny_repo_files, token=TOKEN if repo != "acme/tiny" else None, gated=repo == "acme/gated")
    with pytest.raises(ModelError) as caught:
        resolve_model(ref, tmp_path)
    assert str(caught.value).startswith(expected.format(url=hub.url)) and "\n" not in str(caught.value)


def test_hf_token_opens_a_private_repo(hub, tiny_repo_files, tmp_path, monkeypatch):
    hub.add_repo("acme/private", tiny_repo_files, token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert weights_complete(resolve_model("acme/private", tmp_path).path)


def test_an_unreachable_hub_is_one_line_pointing_to_offline_mode(hub, tmp_path, monkeypatch):
    with socket.socket() as spare:  # a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelError) as caught:
        resolve_model("acme/tiny", tmp_path)
    message = str(caught.value)
    assert message.startswith(f"acme/tiny: cannot reach http://127.0.0.1:{port}") and "\n" not in message
    assert message.endswith("set HF_HUB_OFFLINE=1 to use only cached models")


def test_offline_mode_uses_the_cache_and_never_the_network(hub, tiny_repo_files, tmp_path, monkeypatch):
    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as caught:
        resolve_model("acme/tiny", tmp_path)
    assert "not in the Hugging Face cache" in str(caught.value) and "unset HF_HUB_OFFLINE" in str(caught.value)
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    resolve_model(f"acme/tiny@{sha}", tmp_path)  # fetched once, by commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    count = len(hub.requests)
    assert resolve_model(f"acme/tiny@{sha}", tmp_path).path.name == sha
    assert resolve_model("acme/tiny", tmp_path).revision == sha  # the cached snapshot with every weight
    assert len(hub.requests) == count


def test_small_files_first_then_weights_with_progress(hub, tiny_repo_files, tmp_path):
    hub.add_repo("acme/tiny", tiny_repo_files)
    light = resolve_model("acme/tiny", tmp_path, weights=False)
    assert (light.path / "config.json").is_file() and (light.path / "tokenizer.json").is_file()
    assert not (light.path / "model.safetensors").exists() and hub.fetched("model.safetensors") == []
    seen: list[tuple[str, int, int | None]] = []

    def display(what):
        from contextlib import contextmanager

        @contextmanager
        def bar():
            yield lambda done, total: seen.append((what, done, total))
        return bar()

    with showing_downloads(display):
        full = resolve_model("acme/tiny", tmp_path)
    size = len(tiny_repo_files["model.safetensors"])
    assert full.path == light.path and seen[0] == ("downloading acme/tiny", 0, size) and seen[-1][1:] == (size, size)


def test_a_download_stopped_midway_resumes_with_a_range_request(hub, tiny_repo_files, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # several writes per file
    sha = hub.add_repo("acme/tiny", tiny_repo_files)
    weights = tiny_repo_files["model.safetensors"]
    snapshot = resolve_model("acme/tiny", tmp_path, weights=False).path
    written: list[int] = []

    def stop_after_a_megabyte():
        return bool(written) and written[-1] >= 1 << 20

    def display(_what):
        from contextlib import contextmanager

        @contextmanager
        def bar():
            yield lambda done, _total: written.append(done)
        return bar()

    config = {"model": "acme/tiny", "model_revision": sha, "model_path": str(snapshot)}
    from tui_ft.engine.models import DownloadStopped

    with pytest.raises(DownloadStopped):
        fetch_run_weights(config, display, stop_after_a_megabyte)
    partial = next((snapshot.parents[1] / "blobs").glob("*.incomplete"))
    kept = partial.stat().st_size
    assert 1 << 20 <= kept < len(weights) and not (snapshot / "model.safetensors").exists()
    written.clear()
    fetch_run_weights(config, display)
    assert written[0] == kept  # the bytes shown start where the stopped download left off
    assert (snapshot / "model.safetensors").read_bytes() == weights and not partial.exists()
    second = hub.fetched("model.safetensors")[-1]
    assert second[2].get("range") == f"bytes={kept}-"


def test_a_connection_dropped_midway_is_resumed_in_the_same_call(hub, tiny_repo_files, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.add_repo("acme/tiny", tiny_repo_files)
    weights = tiny_repo_files["model.safetensors"]
    hub.drop_once["model.safetensors"] = len(weights) // 2
    resolved = resolve_model("acme/tiny", tmp_path)
    assert (resolved.path / "model.safetensors").read_bytes() == weights
    gets = hub.fetched("model.safetensors")
    assert len(gets) == 2 and "range" not in gets[0][2] and gets[1][2]["range"].startswith("bytes=")
    assert 0 < int(gets[1][2]["range"].removeprefix("bytes=").rstrip("-")) <= len(weights) // 2

