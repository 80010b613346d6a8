"""Models by Hub id (``org/name[@revision]``) against a stand-in Hub served on 127.0.0.1.

The stand-in answers the requests huggingface_hub 2.4 makes (read from its source):
``GET /api/models/{repo}/revision/{rev}`` (the commit), ``GET /api/models/{repo}/tree/{commit}``
(the file list), ``HEAD``/``GET /{repo}/resolve/{commit}/{file}`` (``X-Repo-Commit``, ``ETag``,
``Content-Length``; ``Range`` answered with 206). It never sends ``X-Xet-*`` headers, so hf-xet
stays out. ``HF_ENDPOINT`` points at it and the Hugging Face cache lives in ``tmp_path``: nothing
leaves the machine (a guard refuses any connection elsewhere).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tui_ft.engine.models import ModelError, fetch_run_weights, resolve_model, showing_downloads
from tui_ft.engine.models.hub import weights_complete

TOKEN = "hf_standin_secret"


class StandInHub(http.server.ThreadingHTTPServer):
    """Model repos in memory; every request is recorded as ``(method, path, headers)``."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.drop_once: dict[str, int] = {}  # file path -> bytes sent before the connection is cut, once
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], branch: str = "main", token: str | None = None,
                 gated: bool = False) -> str:
        """Add (or add a commit to) a repo; returns the commit sha."""
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
                           + branch.encode()).hexdigest()
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}, "token": token, "gated": gated})
        repo["refs"][branch] = sha
        repo["commits"][sha] = files
        return sha

    def fetched(self, suffix: str) -> list[tuple[str, str, dict]]:
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith(suffix)]


class HubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, send_body: bool = True) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, send_body: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": code}).encode(), headers, send_body)

    def _answer(self, body: bool) -> None:
        hub: StandInHub = self.server
        path = urlsplit(self.path).path
        hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        api = parts[:2] == ["api", "models"]
        repo_id = "/".join(parts[2:4] if api else parts[0:2])
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", body)
        authorized = self.headers.get("Authorization") == f"Bearer {repo['token']}"
        if repo["token"] and not authorized and (api and not repo["gated"] or not api):
            return self._error(401, "GatedRepo" if repo["gated"] else "RepoNotFound", body)
        kind, revision, rest = (parts[4], parts[5], parts[6:]) if api else (parts[2], parts[3], parts[4:])
        commit = repo["refs"].get(revision, revision if revision in repo["commits"] else None)
        if commit is None:
            return self._error(404, "RevisionNotFound", body)
        files = repo["commits"][commit]
        if api and kind == "revision":
            return self._send(200, json.dumps({"id": repo_id, "sha": commit}).encode(),
                              {"Content-Type": "application/json"}, body)
        if api and kind == "tree":
            listing = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                       for name, data in sorted(files.items())]
            return self._send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"}, body)
        name = "/".join(rest)
        if kind != "resolve" or name not in files:
            return self._error(404, "EntryNotFound", body, commit)
        self._send_file(files[name], commit, name, body)

    def _send_file(self, data: bytes, commit: str, name: str, body: bool) -> None:
        hub: StandInHub = self.server
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        start = 0
        wanted = self.headers.get("Range")
        if wanted and body:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        status = 206 if wanted and body else 200
        cut = hub.drop_once.pop(name, None) if body else None
        if cut is None:
            return self._send(status, data[start:], headers, body)
        # Announce the whole file, send part of it, then cut the connection (a network drop).
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def tiny_repo_files(tiny_model_dir) -> dict[str, bytes]:
    """The tiny model's files, plus a pickle and a subfolder that must never be fetched."""
    files = {p.name: p.read_bytes() for p in Path(tiny_model_dir).iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"a pickle that must never be downloaded"
    files["original/params.json"] = b"{}"
    files["README.md"] = b"# tiny"
    return files


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A stand-in Hub, ``HF_ENDPOINT`` pointing at it, an empty Hugging Face cache, no token."""
    server = StandInHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE",
                 "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("huggingface_hub.utils._auth._get_token_from_file", lambda: None)  # no stored login
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Any connection that is not to 127.0.0.1 fails the test: nothing may leave the machine."""
    connect = socket.socket.connect

    def guarded(sock, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def hub_cache(tmp_path) -> Path:
    return tmp_path / "hf-home" / "hub"


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
    fetch_run_weights(config)
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

