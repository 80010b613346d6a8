"""The decoding path is measured once per machine and model, then remembered; --stats names it."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
import torch

from tui_ft.engine.generation import decode_path
from tui_ft.engine.generation.decode_path import PATHS_FILE, DecodePath, candidates, choose_decode_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture
def unpinned(monkeypatch):
    monkeypatch.delenv(decode_path.PIN_ENV, raising=False)


def test_candidates_are_each_decoder_at_one_thread_and_at_all(monkeypatch):
    assert candidates(True, 4, False) == [DecodePath(True, 1), DecodePath(True, 4), DecodePath(False, 1),
                                          DecodePath(False, 4)]
    assert candidates(False, 1, False) == [DecodePath(False, 1)]
    assert candidates(True, 3, True) == [DecodePath(True, 3), DecodePath(False, 3)]  # --threads 3: only the decoder


def test_the_fastest_path_is_chosen_remembered_and_measured_again_on_another_cpu(tiny, tmp_path, monkeypatch,
                                                                                   unpinned):
    probed = []

    def fake_probe(model, paths, prompt):
        probed.append(paths)
        return {path: (30.0 if not path.lean and path.threads == 1 else 10.0 + path.threads) for path in paths}

    monkeypatch.setattr(decode_path, "probe", fake_probe)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    first = choose_decode_path(tiny, "tiny|fp32", tmp_path)
    assert (first.lean, first.threads, first.how) == (False, 1, "probed")
    assert first.describe() == ("transformers forward, 1 thread (probed: lean decoder, 1 thread 11.0, lean decoder, "
                                "2 threads 12.0, transformers forward, 1 thread 30.0, transformers forward, 2 threads "
                                "12.0 tokens/s)")
    again = choose_decode_path(tiny, "tiny|fp32", tmp_path)
    assert (again.lean, again.threads, again.how) == (False, 1, "remembered") and len(probed) == 1
    assert again.speeds == first.speeds
    # Another model, or kernels capped at AVX2 (another machine, as torch sees it): measured again.
    choose_decode_path(tiny, "tiny|bf16", tmp_path)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    choose_decode_path(tiny, "tiny|fp32", tmp_path)
    assert len(probed) == 3
    assert len(orjson.loads((tmp_path / PATHS_FILE).read_bytes())) == 3
    # The user's --threads: only the decoder is chosen.
    asked = choose_decode_path(tiny, "tiny|fp32", tmp_path, threads=2)
    assert (asked.threads, asked.how) == (2, "asked") and probed[-1] == [DecodePath(True, 2), DecodePath(False, 2)]


def test_a_damaged_store_is_measured_again_and_rewritten(tiny, tmp_path, unpinned):
    (tmp_path / PATHS_FILE).write_text("[not, json")
    path = choose_decode_path(tiny, "tiny|fp32", tmp_path)  # a real probe on the tiny model
    assert path.how in ("probed", "fixed") and path.threads >= 1
    if path.how == "probed":
        assert len(path.speeds) == len(candidates(True, torch.get_num_threads(), False))
        assert all(rate > 0 for _, rate in path.speeds)
        assert isinstance(orjson.loads((tmp_path / PATHS_FILE).read_bytes()), dict)


def test_every_path_decodes_the_same_tokens(tiny):
    from tui_ft.engine.generation.sampling import GenerationSettings
    from tui_ft.engine.generation.token_loop import generate_token_ids

    prompt = list(range(5, 25))
    outputs = {lean: list(generate_token_ids(tiny, prompt, GenerationSettings(max_new_tokens=12), set(), lean=lean,
                                             lookup=False)) for lean in (True, False)}
    assert outputs[True] == outputs[False] and len(outputs[True]) == 12


def test_stats_name_the_decoding_path(tiny_model_dir, tmp_path):
    env = {**__import__("os").environ, "TUI_FT_CACHE": str(tmp_path / "cache"), "TUI_FT_DECODE": ""}
    done = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(tmp_path), "chat", str(tiny_model_dir),
                           "--prompt", "hi", "--max-new-tokens", "4", "--temperature", "0", "--stats", "--threads", "1"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0, done.stderr
    line = [text for text in done.stderr.splitlines() if text.startswith("decoding: ")]
    assert len(line) == 1 and line[0].endswith("tokens/s)") and "1 thread (asked:" in line[0], done.stderr
    assert (tmp_path / "cache" / PATHS_FILE).is_file()
