"""A stand-in Hugging Face Hub served on 127.0.0.1, for tests of models by Hub id (no network).

The stand-in answers the requests huggingface_hub 2.4 makes (read from its source):
``GET /api/models/{repo}/revision/{rev}`` (the commit), ``GET /api/models/{repo}/tree/{commit}``
(the file list), ``HEAD``/``GET /{repo}/resolve/{commit}/{file}`` (``X-Repo-Commit``, ``ETag``,
``Content-Length``; ``Range`` answered with 206); for dataset repos the same under
``/api/datasets/`` and ``/datasets/{repo}/resolve/``. It never sends ``X-Xet-*`` headers, so hf-xet
stays out. The ``hub`` fixture points ``HF_ENDPOINT`` at it and keeps the Hugging Face cache in
``tmp_path`` (a run's worker, a child process, inherits both); ``only_loopback`` refuses any
connection elsewhere. Import the fixtures a test module uses from here (pytest puts ``tests/``
on ``sys.path``).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

TOKEN = "hf_standin_secret"
SEND_PIECE = 64 * 1024  # what a throttled answer writes at a time


class StandInHub(http.server.ThreadingHTTPServer):
    """Model repos in memory; every request is recorded as ``(method, path, headers)``."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.repos: dict[str, dict] = {}
        self.datasets: dict[str, dict] = {}  # dataset repos, a namespace of their own as on the Hub
        self.requests: list[tuple[str, str, dict]] = []
        self.drop_once: dict[str, int] = {}  # file path -> bytes sent before the connection is cut, once
        self.rate: float | None = None  # bytes a second for file bodies (a slow link), or None: at once
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], branch: str = "main", token: str | None = None,
                 gated: bool = False, dataset: bool = False) -> str:
        """Add (or add a commit to) a model repo, or a dataset repo; returns the commit sha."""
        sha = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
                           + branch.encode()).hexdigest()
        repo = (self.datasets if dataset else self.repos).setdefault(repo_id, {"refs": {}, "commits": {}, "token": token, "gated": gated})
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
        dataset = parts[:2] == ["api", "datasets"] or parts[:1] == ["datasets"]
        if parts[:1] == ["datasets"]:
            parts = parts[1:]
        api = parts[:2] in (["api", "models"], ["api", "datasets"])
        repo_id = "/".join(parts[2:4] if api else parts[0:2])
        repo = (hub.datasets if dataset else hub.repos).get(repo_id)
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
        if cut is None and not (hub.rate and body):
            return self._send(status, data[start:], headers, body)
        if cut is None:
            return self._send_slowly(status, data[start:], headers, hub.rate)
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


    def _send_slowly(self, status: int, data: bytes, headers: dict, rate: float) -> None:
        """Send ``data`` at about ``rate`` bytes a second; a client that goes away ends it quietly."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for start in range(0, len(data), SEND_PIECE):
                self.wfile.write(data[start:start + SEND_PIECE])
                self.wfile.flush()
                time.sleep(SEND_PIECE / rate)
        except OSError:  # the client stopped reading (a stopped download)
            self.close_connection = True


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
                 "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("huggingface_hub.utils._auth._get_token_from_file", lambda: None)  # no stored login
    # huggingface_hub reads HF_HUB_OFFLINE once, when first imported: a test that imported it
    # with the variable set (tests/engine/test_models.py) left it offline for the whole process.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
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
    """The Hugging Face cache the ``hub`` fixture sets up."""
    return tmp_path / "hf-home" / "hub"
