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
