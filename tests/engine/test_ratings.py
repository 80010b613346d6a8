"""Ratings files (append, read, summary, torn lines) and Markdown transcripts, without a model."""

import orjson
import pytest

from tui_ft.engine.evaluation.ratings import (
    append_rating,
    ratings_path,
    read_ratings,
    summarize_ratings,
)
from tui_ft.engine.generation.transcript import export_transcript, transcript_markdown
from tui_ft.engine.workspace import reference_slug


def rating(h, a, c, **extra):
    return {"prompt": "What is 2+2?", "reply": "4", "model": "run1", "use_adapter": True,
            "settings": {"temperature": 0.0}, "helpfulness": h, "accuracy": a, "clarity": c, **extra}


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "checkpoints" / "run1"
    folder.mkdir(parents=True)
    (folder / "run.json").write_bytes(orjson.dumps({"model": "default"}))
    return folder


def test_append_read_and_summarize(run_dir):
    append_rating(run_dir, rating(5, 4, 3))
    append_rating(run_dir, rating(2, 4, 4, time=123.0))
    records = read_ratings(run_dir)
    assert [r["helpfulness"] for r in records] == [5, 2]
    assert records[1]["time"] == 123.0 and records[0]["time"] > 1e9
    assert records[0]["prompt"] == "What is 2+2?" and records[0]["settings"] == {"temperature": 0.0}
    summary = summarize_ratings(records)
    assert summary.count == 2
    assert summary.means == {"helpfulness": 3.5, "accuracy": 4.0, "clarity": 3.5}
    assert summary.line() == "2 rated · helpfulness 3.5 · accuracy 4.0 · clarity 3.5"


def test_torn_last_line_is_skipped_and_the_next_append_stays_whole(run_dir):
    append_rating(run_dir, rating(4, 4, 4))
    with open(run_dir / "ratings.jsonl", "ab") as handle:
        handle.write(b'{"prompt": "half a rec')  # a writer died mid-line
    assert len(read_ratings(run_dir)) == 1
    append_rating(run_dir, rating(1, 2, 3))
    records = read_ratings(run_dir)
    assert [(r["helpfulness"], r["accuracy"], r["clarity"]) for r in records] == [(4, 4, 4), (1, 2, 3)]


@pytest.mark.parametrize("bad", [0, 6, 3.5, None, "4", True])
def test_scores_outside_one_to_five_are_refused(run_dir, bad):
    with pytest.raises(ValueError, match="clarity"):
        append_rating(run_dir, rating(3, 3, bad))
    assert not (run_dir / "ratings.jsonl").exists()


def test_ratings_path_for_runs_and_other_models(tmp_path, run_dir):
    assert ratings_path("run1", tmp_path) == run_dir / "ratings.jsonl"
    assert ratings_path(str(run_dir), tmp_path) == run_dir / "ratings.jsonl"
    assert ratings_path("default", tmp_path) == tmp_path / "ratings" / "default.jsonl"
    assert ratings_path("/models/My Model/", tmp_path) == tmp_path / "ratings" / "models-My-Model.jsonl"
    assert reference_slug("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB-SmolLM2-135M"
    append_rating(ratings_path("default", tmp_path), rating(3, 3, 3, model="default"))
    assert summarize_ratings(read_ratings(tmp_path / "ratings" / "default.jsonl")).count == 1
    assert summarize_ratings(read_ratings(tmp_path / "missing.jsonl")).line() == "no ratings yet"


def test_transcript_markdown_has_every_turn_in_order(tmp_path):
    turns = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris.", "label": "tuned"},
        {"role": "assistant", "content": "It is Paris.", "label": "base"},
    ]
    text = transcript_markdown(turns, "run1", {"temperature": 0.7}, system_prompt="Be brief.", exported=0)
    assert text.startswith("# Chat with run1\n")
    assert "- settings: temperature 0.7" in text
    order = [text.index(s) for s in ("## System\n\nBe brief.", "## User\n\nWhat is the capital",
                                      "## Assistant (tuned)\n\nParis.", "## Assistant (base)\n\nIt is Paris.")]
    assert order == sorted(order)
    written = export_transcript(turns, "run1", tmp_path)
    assert written.parent == tmp_path / "transcripts" and written.name.endswith("-run1.md")
    assert "## Assistant (tuned)\n\nParis." in written.read_text()
    chosen = export_transcript(turns, "run1", tmp_path, path="notes/chat.md")
    assert chosen == tmp_path / "notes" / "chat.md" and chosen.is_file()


def test_ratings_of_different_replies_to_one_prompt_make_preference_pairs():
    from tui_ft.engine.evaluation.ratings import preference_pairs

    records = [rating(5, 5, 5, reply="Four."), rating(2, 3, 2, reply="It might be 5."),
               rating(4, 4, 4, reply="Four."),  # rated twice: its mean, 13.5, still beats 7
               rating(3, 3, 3, reply="Around four, I think."), rating(3, 3, 3, reply="Four-ish."),  # a tie: no pair
               rating(5, 5, 5, prompt="Capital of France?", reply="Paris."),  # alone for its prompt: no pair
               rating(1, 1, 1, prompt="  ", reply="x")]  # no prompt: skipped
    pairs = preference_pairs(records)
    assert pairs == [
        {"prompt": "What is 2+2?", "chosen": "Four.", "rejected": "Around four, I think."},
        {"prompt": "What is 2+2?", "chosen": "Four.", "rejected": "Four-ish."},
        {"prompt": "What is 2+2?", "chosen": "Four.", "rejected": "It might be 5."},
        {"prompt": "What is 2+2?", "chosen": "Around four, I think.", "rejected": "It might be 5."},
        {"prompt": "What is 2+2?", "chosen": "Four-ish.", "rejected": "It might be 5."},
    ]


def test_pairs_from_ratings_cli_joins_a_runs_ratings_with_its_base_models(tmp_path, run_dir):
    import subprocess
    import sys

    append_rating(run_dir, rating(5, 4, 5, reply="Four."))  # the tuned reply, in the run's folder
    append_rating(ratings_path("default", tmp_path), rating(2, 2, 3, reply="2+2 is a sum...", model="default"))
    command = [sys.executable, "-m", "tui_ft", "--home", str(tmp_path), "data", "pairs-from-ratings", "run1"]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line) for line in done.stdout.splitlines()] == [
        {"prompt": "What is 2+2?", "chosen": "Four.", "rejected": "2+2 is a sum..."}]
    assert done.stderr.strip() == "1 pair from 2 ratings of 1 prompt"
    out = tmp_path / "pairs.jsonl"
    written = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert written.returncode == 0 and out.read_text() == done.stdout
    checked = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(tmp_path), "data", "check", str(out)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert checked.returncode == 0, checked.stdout  # a preference file the reward model and DPO train on
    again = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert again.returncode == 2 and again.stderr.strip() == f"tui-ft: {out}: already exists"
    lonely = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(tmp_path), "data", "pairs-from-ratings",
                             "nobody"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert lonely.returncode == 2 and "nobody: no pairs in 0 ratings" in lonely.stderr
