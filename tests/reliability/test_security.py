"""Security: weights only from safetensors, pickles only with ``weights_only=True``, no model code run
unless trusted, run names that cannot leave the workspace, and no network at run time.

Malicious files are real: a pickle whose loading writes a marker file (checked live with
``weights_only=False`` first), and a model folder whose own Python code writes a marker when
imported.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.models import ModelError, load_model, load_tokenizer, resolve_model
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.config_checks import validate_config
from tui_ft.engine.runs.worker import run_worker

from report import Section
from workers import new_run, one_thread  # noqa: F401

PACKAGE = Path(__file__).resolve().parents[2] / "tui_ft"
UNSAFE_NAMES = {
    "dotdot": "../x", "absolute": "/abs", "nested": "a/b", "parent": "..", "hidden": ".hidden",
    "nul": "a\x00b", "newline": "run\n", "long": "x" * 65,
}
SECTION = Section(
    "security",
    "Security",
    [
        "Written by `tests/reliability/test_security.py`. Pickles and model code are live payloads that write a marker",
        "file when run; every row asserts the marker was not written.",
    ],
    ["check", "trials", "outcome"],
    ["torch-load", "pickle-bin", "pickle-optimizer", "remote-code", "names", "run-actions", "network"],
)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    SECTION.write_if_complete()


# ----- the source ------------------------------------------------------------------------------


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_source_loads_pickles_only_with_weights_only_and_never_trusts_code_by_itself():
    files = sorted(PACKAGE.rglob("*.py"))
    loads, pretrained = 0, 0
    for path in files:
        source = path.read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"} & set(names), path
                if getattr(node, "module", None) == "torch":
                    assert "load" not in [a.name for a in node.names], f"{path}: from torch import load"
        for call in calls(tree):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "load" and ast.unparse(func.value) == "torch":
                loads += 1
                flag = keyword(call, "weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{call.lineno}: {ast.unparse(call)}"
            if isinstance(func, ast.Attribute) and func.attr == "from_pretrained":
                pretrained += 1
                trust = keyword(call, "trust_remote_code")
                assert not (isinstance(trust, ast.Constant) and trust.value), f"{path}:{call.lineno}: trusts code"
                if ast.unparse(func.value) == "AutoModelForCausalLM" and keyword(call, "gguf_file") is None:
                    safetensors = keyword(call, "use_safetensors")
                    assert isinstance(safetensors, ast.Constant) and safetensors.value is True, f"{path}:{call.lineno}"
    assert loads >= 3 and pretrained >= 4  # the scan sees the calls it is about
    assert TrainConfig().trust_remote_code is False
    # No counts in the report: they change whenever someone adds a call, and the file would churn.
    SECTION.add("torch-load", "source scan of every module in tui_ft/", "every call",
                "every torch.load has weights_only=True; no pickle/dill/joblib/marshal import; no from_pretrained "
                "trusts code by itself; model weights with use_safetensors=True (GGUF conversion aside)")


# ----- pickles ---------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def write_payload(path: Path, marker: Path) -> None:
    """A pickle that runs code when loaded; proven live with ``torch.load(weights_only=False)``."""
    import torch

    torch.save(Payload(marker), path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()


def test_a_pickle_beside_the_safetensors_is_never_loaded(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "pwned"
    write_payload(folder / "pytorch_model.bin", marker)
    model, _ = load_model(resolve_model(str(folder), tmp_path))
    assert model.config.num_hidden_layers == 2 and not marker.exists()

    only_pickle = tmp_path / "only-pickle"
    only_pickle.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "pytorch_model.bin"):
        shutil.copy(folder / name, only_pickle / name)
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(only_pickle), tmp_path)
    assert not marker.exists()
    SECTION.add("pickle-bin", "a pickle payload as pytorch_model.bin (beside safetensors / alone)", 2,
                "the safetensors load, the pickle is never read; a pickle-only folder is refused as not a model folder")


def test_a_tampered_optimizer_state_fails_the_resume_without_running(workspace, tiny_model_dir, tmp_path, one_thread):
    run_dir = new_run(workspace, tiny_model_dir, method="lora", max_steps=2, save_every=1)
    marker = tmp_path / "pwned"
    from tui_ft.engine.training.trainer import train_run

    class StopAfterOne:
        calls = 0

        def __call__(self):
            self.calls += 1
            return self.calls > 1

    assert train_run(run_dir, StopAfterOne()) == "stopped"
    write_payload(run_dir / "ckpt" / "step-1" / "optimizer.pt", marker)
    assert run_worker(run_dir) == 1
    from tui_ft.engine.runs import read_status

    status = read_status(run_dir)
    assert status["state"] == "failed" and "UnpicklingError" in status["message"], status
    assert not marker.exists()
    SECTION.add("pickle-optimizer", "a pickle payload as a checkpoint's optimizer.pt, then resume", 1,
                "`torch.load(weights_only=True)` refuses it: the run is `failed` (UnpicklingError), the code never ran")


# ----- a model's own code ----------------------------------------------------------------------

EVIL_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    model_type = "evil-llama"
class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig
"""


def test_a_model_with_its_own_code_is_refused_unless_trusted(workspace, tiny_model_dir, tmp_path, capsys):
    folder = workspace / "evil"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "pwned"
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "evil-llama", "architectures": ["EvilForCausalLM"],
               "auto_map": {"AutoConfig": "evil_code.EvilConfig", "AutoModelForCausalLM": "evil_code.EvilForCausalLM"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil_code.py").write_text(EVIL_CODE.format(marker=str(marker)))

    load_tokenizer(folder)  # no stdin prompt (pytest's stdin raises if read), no code
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_model(resolve_model(str(folder), workspace))
    errors = dict(validate_config(TrainConfig(model=str(folder), dataset="datasets/seed_instructions.jsonl"), workspace))
    assert "its own Python code" in errors.get("model", ""), errors
    trusted = TrainConfig(model=str(folder), dataset="datasets/seed_instructions.jsonl", trust_remote_code=True)
    assert "model" not in dict(validate_config(trusted, workspace))  # the user's explicit choice is honoured
    lines = []
    for argv in (["train", "--model", str(folder), "--dataset", "seed_instructions.jsonl", "--method", "lora"],
                 ["chat", str(folder), "--prompt", "hi"],
                 ["eval", str(folder), "--perplexity", "seed_instructions.jsonl", "--no-cache"]):
        assert main(["--home", str(workspace), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("tui-ft: ") and "trust_remote_code" in err, err
        lines.append(err)
    assert list((workspace / "checkpoints").iterdir()) == []
    assert not marker.exists()
    SECTION.add("remote-code", "a model folder whose config maps to its own Python code (a live payload)", 4,
                "tokenizer loads without asking; `train`, `chat`, `eval` refuse it in one line naming "
                "trust_remote_code; no run folder; the code never ran; `trust_remote_code=true` lifts the refusal")


# ----- names and paths -------------------------------------------------------------------------


def test_run_names_cannot_leave_the_workspace(workspace, tiny_model_dir, capsys, tmp_path):
    base = ["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset", "seed_instructions.jsonl",
            "--method", "lora", "--detach"]
    for key, name in UNSAFE_NAMES.items():
        assert main(base + ["--name", name]) == 2, key
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not a safe run name" in err, (key, err)
    assert list((workspace / "checkpoints").iterdir()) == [] and not (tmp_path / "x").exists()
    assert not Path("/abs").exists()
    shown = [f"`{name!r}`" if len(name) < 20 else f"a name of {len(name)} characters" for name in UNSAFE_NAMES.values()]
    SECTION.add("names", "`train --name` " + ", ".join(shown), len(UNSAFE_NAMES),
                "each refused in one line (exit 2); no folder created anywhere")


def test_run_actions_refuse_names_outside_the_workspace(workspace, tiny_model_dir, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    (outside / "checkpoints").mkdir(parents=True)
    victim = new_run(outside, tiny_model_dir, name="victim", max_steps=1)  # a real run folder outside the workspace
    other = new_run(workspace, tiny_model_dir, name="other", max_steps=1)
    (other / "adapter").mkdir()
    (other / "adapter" / "adapter_config.json").write_text("{}")
    escape = os.path.relpath(victim, workspace / "checkpoints")
    actions = [["runs", "stop", "../../etc"], ["runs", "stop", escape], ["runs", "resume", escape],
               ["runs", "resume", str(victim)], ["export", escape, "--merged", str(tmp_path / "out")],
               ["runs", "stop", ".."], ["export", "other", "--merged", str(other / "adapter")]]
    for argv in actions:
        assert main(["--home", str(workspace), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("tui-ft: ") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert not (victim / "STOP").exists() and json.loads((victim / "status.json").read_text())["state"] == "queued"
    assert json.loads((other / "adapter" / "adapter_config.json").read_text()) == {} and not (tmp_path / "out").exists()
    SECTION.add("run-actions", "`runs stop/resume`, `export` on `../../etc`, `..`, a relative or absolute path to a "
                "run outside the workspace; export into another run's non-empty folder", len(actions),
                "each refused in one line (exit 2); the outside run and the other run's files untouched")


# ----- the network -----------------------------------------------------------------------------

SITECUSTOMIZE = '''
"""Block and record every internet connection of this process (loaded through PYTHONPATH)."""
import os, socket, sys

LOG = os.environ["TUI_FT_NET_LOG"]
with open(LOG + ".loaded", "a") as file:
    file.write(" ".join(sys.orig_argv) + "\\n")


def _refuse(what, target):
    with open(LOG, "a") as file:
        file.write(f"{os.getpid()} {what} {target!r}\\n")
    raise OSError(101, "network blocked by the reliability test")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect_ex", address)
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.create_connection = lambda address, *a, **k: _refuse("create_connection", address)
socket.getaddrinfo = lambda host, *a, **k: _refuse("getaddrinfo", host)
'''

DRIVER = '''
import json, socket, sys
from tui_ft.cli import main

home, model = sys.argv[1], sys.argv[2]
codes = {
    "train": main(["--home", home, "train", "--model", model, "--dataset", "seed_instructions.jsonl", "--method", "lora",
                   "--max-steps", "2", "--name", "offline", "--set", "threads=1", "--set", "eval_split=0"]),
    "chat": main(["--home", home, "chat", "offline", "--prompt", "Say hi.", "--max-new-tokens", "4"]),
    "eval": main(["--home", home, "eval", "offline", "--perplexity", "seed_instructions.jsonl", "--json"]),
}
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1)
    codes["control"] = "connected"
except OSError:
    codes["control"] = "blocked"
print("CODES " + json.dumps(codes), file=sys.stderr)
'''


def test_train_chat_and_eval_run_with_the_network_blocked(workspace, tiny_model_dir, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "network.log"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}  # a download attempt would go out
    env |= {"PYTHONPATH": os.pathsep.join([str(site), str(PACKAGE.parent)]), "TUI_FT_NET_LOG": str(log),
            "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", DRIVER, str(workspace), str(tiny_model_dir)], env=env,
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "CODES " in result.stderr, result.stderr[-3000:]
    codes = json.loads(result.stderr.split("CODES ", 1)[1])
    assert codes == {"train": 0, "chat": 0, "eval": 0, "control": "blocked"}, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    evaluated = json.loads(result.stdout[result.stdout.index('{\n  "results"'):])["results"]
    assert evaluated[0]["perplexity"] > 1 and evaluated[0]["tokens"] > 0
    loaded = (tmp_path / "network.log.loaded").read_text()
    assert "tui_ft.engine.runs.worker" in loaded  # the detached worker ran with the block too
    attempts = log.read_text().splitlines()
    assert len(attempts) == 1 and "127.0.0.1" in attempts[0], attempts  # only the driver's own control attempt
    status = json.loads((workspace / "checkpoints" / "offline" / "status.json").read_text())
    assert (status["state"], status["step"]) == ("finished", 2)
    SECTION.add("network", "`tui-ft train` (with its detached worker), `chat --prompt`, `eval --perplexity` with "
                "internet sockets blocked, HF_HUB_OFFLINE unset, an empty HF_HOME", 3,
                "all exit 0; 0 connection attempts (a control attempt in the same process is caught and logged)")
