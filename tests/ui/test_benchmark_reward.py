"""The Benchmark pane shows a reward model's judgements (``eval --reward``) as a column of mean rewards."""

from __future__ import annotations

import json

from textual.widgets import DataTable, Static

from tui_ft.engine.evaluation import store as eval_store
from tui_ft.engine.files import write_json_atomic
from tui_ft.engine.models.default_model import default_model_dir
from tui_ft.engine.models.references import ModelRef
from tui_ft.ui.widgets.bench_picker import option_label
from tui_ft.views.bench_table import Column

from bench_workspace import BenchApp, bench_home, headers, make_run, open_pane, shown  # noqa: F401 (fixture)

SHEET = "datasets/sheet.jsonl"


def store_judgement(home, model: str, rewards: list[float]) -> None:
    """A stored ``eval --reward`` result of ``model`` (default or a run), as the engine writes it."""
    judge = (home / "checkpoints" / "judge").resolve()
    if model == "default":
        resolved, run_dir, model_id = ModelRef("default", default_model_dir(), "default"), None, f"default:{default_model_dir()}"
    else:
        run_dir = (home / "checkpoints" / model).resolve()
        resolved, model_id = ModelRef(model, default_model_dir(), "run", run_dir / "adapter", "chat"), f"run:{run_dir}"
    identity = {"kind": "reward", "model": model_id, "checkpoint": None, "template": "chat", "prompts": SHEET,
                "reward_model": f"run:{judge}", "settings": {"max_new_tokens": 64}}
    items = [{"prompt": f"Question {i}?", "reply": f"Answer {i}.", "reward": r, "line": i + 1} for i, r in enumerate(rewards)]
    record = identity | {"reward": sum(rewards) / len(rewards), "n": len(rewards), "items": items,
                         "reward_model_name": "judge", "model": model, "model_id": model_id,
                         "created": "2026-01-02T00:00:00+00:00", "key": eval_store.result_key(identity), "fingerprint": {}}
    write_json_atomic(eval_store.result_path(eval_store.results_dir(resolved, home, run_dir), identity), record,
                      parents=True)


async def test_a_reward_column_shows_mean_rewards_sorts_and_opens_each_reply(bench_home):
    judge = make_run(bench_home, "judge")
    config = json.loads((judge / "run.json").read_text()) | {"method": "reward"}
    (judge / "run.json").write_text(json.dumps(config))
    (bench_home / SHEET).write_text('{"prompt": "Question 0?"}\n{"prompt": "Question 1?"}\n')
    store_judgement(bench_home, "default", [-1.0, 0.0])
    store_judgement(bench_home, "run-a", [1.0, 1.5])
    app = BenchApp(bench_home)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_pane(app, pilot)
        assert headers(grid)[-1] == "sheet reward:judge"
        rows = shown(grid)
        assert "judge" not in rows  # a reward model judges; it is not a row to score
        assert rows["default"][-1] == "-0.50" and rows["run-a"][-1] == "+1.25"
        # The picker offers the sheet under the reward model, as it offers a benchmark.
        column = Column("reward", SHEET, scorer="judge")
        assert option_label(column) == "reward:judge · sheet"
        assert column.key in {c.key for c in app.screen.column_options()}
        grid.move_cursor(row=list(rows).index("default"), column=len(headers(grid)) - 1)
        await pilot.press("o")  # best first: the higher mean reward on top
        await pilot.pause()
        order = [name for name in shown(grid) if shown(grid)[name][-1]]
        assert order == ["run-a", "default"]
        grid.move_cursor(row=list(shown(grid)).index("run-a"), column=len(headers(grid)) - 1)
        await pilot.press("d")
        await pilot.pause()
        summary = str(app.screen.query_one("#bench-items-summary", Static).render())
        assert summary.startswith("run-a · datasets/sheet.jsonl — mean reward +1.250 over 2 replies · reward model judge")
        items = app.screen.query_one("#bench-items", DataTable)
        assert [str(items.get_row_at(i)[1]) for i in range(items.row_count)] == ["+1.000", "+1.500"]
        detail = str(app.screen.query_one("#bench-item-detail", Static).render())
        assert "reward +1.000" in detail and "Answer 0." in detail and "expected" not in detail
