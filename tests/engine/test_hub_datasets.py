"""Datasets from the Hub (``hf:org/name[:split]``) against the stand-in Hub on 127.0.0.1 (``tests/hub_standin.py``)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_standin import TOKEN, hub, only_loopback  # noqa: F401 (fixtures)

from tui_ft.engine.data import load_dataset
from tui_ft.engine.data.hub_datasets import fetch_dataset, parse_hub_dataset
from tui_ft.engine.data.readers import DatasetError

ROWS = [{"instruction": f"Say {word}.", "response": word.capitalize() + "."} for word in
        ("yes", "no", "maybe", "hello", "thanks", "bye")]


def parquet(rows: list[dict]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_FT_CACHE", str(tmp_path / "tui_ft-cache"))  # where joined shards go
    return tmp_path / "hf-home" / "hub"


def test_references_parse_with_a_split_and_a_revision():
    assert str(parse_hub_dataset("hf:acme/instr")) == "hf:acme/instr:train"
    assert str(parse_hub_dataset("hf:acme/instr@v1:test")) == "hf:acme/instr@v1:test"
    with pytest.raises(DatasetError, match=r"^hf:acme: not a Hub dataset reference"):
        parse_hub_dataset("hf:acme")


def test_a_split_is_fetched_alone_and_read_by_our_own_readers(hub, cache):
    hub.add_repo("acme/instr", {"README.md": b"# instr", "data/train-00000-of-00001.parquet": parquet(ROWS[:4]),
                                "data/test-00000-of-00001.parquet": parquet(ROWS[4:])}, dataset=True)
    path = fetch_dataset("hf:acme/instr")
    assert path.name == "train-00000-of-00001.parquet" and str(cache) in str(path)
    dataset = load_dataset(path)
    assert dataset.format == "instruction" and len(dataset) == 4
    assert not hub.fetched("test-00000-of-00001.parquet")  # the other split was not downloaded
    test = load_dataset(fetch_dataset("hf:acme/instr:test"))
    assert [r.messages[0]["content"] for r in test.records] == ["Say thanks.", "Say bye."]


def test_shards_are_joined_once_in_order(hub, cache, tmp_path):
    hub.add_repo("acme/big", {f"data/train-0000{i}-of-00003.parquet": parquet(ROWS[2 * i:2 * i + 2]) for i in range(3)},
                 dataset=True)
    hub.add_repo("acme/lines", {"train/part-1.jsonl": jsonl(ROWS[:3]), "train/part-2.jsonl": jsonl(ROWS[3:])},
                 dataset=True)
    joined = fetch_dataset("hf:acme/big")
    assert joined.name == "train.parquet" and joined.parent.parent == tmp_path / "tui_ft-cache" / "datasets" / "acme--big"
    assert [r.messages[0]["content"] for r in load_dataset(joined).records] == [r["instruction"] for r in ROWS]
    assert fetch_dataset("hf:acme/big") == joined
    lines = fetch_dataset("hf:acme/lines")
    assert lines.suffix == ".jsonl" and len(load_dataset(lines)) == 6


def test_problems_are_one_line_each(hub, cache, monkeypatch):
    hub.add_repo("acme/instr", {"data/train-00000-of-00001.parquet": parquet(ROWS)}, dataset=True)
    hub.add_repo("acme/notes", {"README.md": b"no data here"}, dataset=True)
    hub.add_repo("acme/csvs", {"train/a.csv": b"instruction,response\nx,y\n", "train/b.csv": b"instruction,response\n"},
                 dataset=True)
    hub.add_repo("acme/private", {"train.jsonl": jsonl(ROWS)}, dataset=True, token=TOKEN)

    def problem(ref: str) -> str:
        with pytest.raises(DatasetError) as caught:
            fetch_dataset(ref)
        assert len(caught.value.problems) == 1
        return str(caught.value.problems[0])

    assert problem("hf:acme/instr:validation") == "hf:acme/instr:validation: no split 'validation'; it has train"
    assert problem("hf:acme/notes") == "hf:acme/notes: no data files (.parquet, .jsonl, .json, .csv) in the repository"
    assert problem("hf:acme/csvs").startswith("hf:acme/csvs: split 'train' is 2 files (.csv): tui-ft joins Parquet")
    assert problem("hf:acme/nothing") == (f"hf:acme/nothing: no such folder here and no such dataset on {hub.url} (404): "
                                          "check the name")
    assert "private or gated" in problem("hf:acme/private") and f"{hub.url}/datasets/acme/private" in problem(
        "hf:acme/private")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert len(load_dataset(fetch_dataset("hf:acme/private"))) == 6
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(load_dataset(fetch_dataset("hf:acme/private"))) == 6  # cached: no request
    assert "HF_HUB_OFFLINE is set" in problem("hf:acme/instr")  # never fetched: nothing downloaded offline


def test_train_with_a_hub_dataset_records_its_file(hub, cache, workspace, tiny_model_dir, capsys, monkeypatch):
    from tui_ft.cli import main

    monkeypatch.chdir(workspace)
    hub.add_repo("acme/instr", {"data/train-00000-of-00001.parquet": parquet(ROWS)}, dataset=True)
    # In this process (a child would import torch and transformers again: seconds each).
    assert main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset", "hf:acme/instr",
                 "--method", "lora", "--name", "hubdata", "--create-only"]) == 0, capsys.readouterr().err
    config = json.loads((workspace / "checkpoints" / "hubdata" / "run.json").read_text())
    assert config["dataset"].endswith("train-00000-of-00001.parquet") and str(cache) in config["dataset"]
    commit = hub.datasets["acme/instr"]["refs"]["main"]
    assert config["dataset_source"] == f"hf:acme/instr@{commit}:train"  # pinned: the branch may move on
    capsys.readouterr()
    assert main(["--home", str(workspace), "runs", "show", "hubdata", "--recipe"]) == 0
    assert f"dataset: hf:acme/instr@{commit}:train\n" in capsys.readouterr().out
    assert main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset", "hf:acme/instr:dev",
                 "--method", "lora"]) == 1
    assert capsys.readouterr().err.strip() == "tui-ft: hf:acme/instr:dev: no split 'dev'; it has train"
