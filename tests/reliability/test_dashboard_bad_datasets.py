"""The dashboard with bad dataset files: the Datasets pane lists each with its ``path:line``
problems and stays up. One file of each kind the fuzz (``test_fuzz_datasets.py``) generates,
made here without hypothesis; each is selected in turn, so its example and token statistics are
rendered too (a 1 MB reply, text that came from another encoding)."""

from __future__ import annotations

import io
import json
import random

from textual.widgets import DataTable, Static

from tui_ft.ui.app import TuiFtApp

from report import Section

GOOD = {"instruction": "Say hi.", "response": "Hi."}


def parquet_bytes(records: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


def bad_files() -> dict[str, bytes]:
    noise = random.Random(7).randbytes
    jsonl = lambda *rows: "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()  # noqa: E731
    return {
        "random.jsonl": noise(3000), "random.json": noise(3000), "random.csv": noise(3000), "random.parquet": noise(3000),
        "deep.json": b"[" * 30_000 + b"1" + b"]" * 30_000, "deep.jsonl": b'{"a": ' * 30_000 + b"1",
        "huge_reply.jsonl": jsonl(GOOD | {"response": "x" * 1_000_000}, GOOD),
        "huge_role.jsonl": jsonl({"messages": [{"role": "r" * 1_000_000, "content": "x"}]}),
        "wrong_types.jsonl": jsonl({"instruction": 5, "response": ["a"]}, {"messages": "hi"}, [1, 2]),
        "utf16.jsonl": jsonl(GOOD, GOOD).decode().encode("utf-16"),
        "latin1.jsonl": jsonl(GOOD | {"response": "Café déjà vu"}).decode().encode("latin-1"),
        "truncated.parquet": parquet_bytes([GOOD, GOOD])[:-40],
        "mixed.jsonl": b'{"instruction": "a", "response": "b"}\r\n\r\n{"prompt": "p", "chosen": "c"}\r\nnot json\r\n',
    }


SECTION = Section(
    "dashboard-datasets", "Bad dataset files in the dashboard",
    ["Written by `tests/reliability/test_dashboard_bad_datasets.py`: one file of each fuzzed kind in `datasets/`,",
     "each selected in the Datasets pane (Textual pilot, the default model's tokenizer)."],
    ["files", "shown with ✗ and `path:line` problems", "read as valid (example and stats rendered)", "outcome"],
    ["pane"],
)


async def settle(app, pilot) -> None:
    from textual.worker import WorkerCancelled

    for _ in range(3):
        for _ in range(100):
            try:
                await app.workers.wait_for_complete()
                break
            except WorkerCancelled:  # an exclusive worker replaced by a newer one (the next row's stats)
                await pilot.pause(0.05)
        await pilot.pause()


async def test_the_datasets_pane_shows_every_bad_file_and_stays_up(tmp_path, default_model_path):
    files = bad_files()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "checkpoints").mkdir()
    for name, data in files.items():
        (tmp_path / "datasets" / name).write_bytes(data)
    app = TuiFtApp(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        table = screen.query_one("#files", DataTable)
        names = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]  # [0] is the mark, [1] the count
        assert sorted(names) == sorted(files)
        flagged = valid = 0
        for index, name in enumerate(names):
            table.move_cursor(row=index)
            await settle(app, pilot)
            row = screen.selected
            assert row.path.name == name
            problems = str(screen.query_one("#problems", Static).render())
            if row.dataset is None or row.dataset.problems:
                first = row.dataset.problems[0] if row.dataset else None
                assert first is None or f"{first.path}:{first.line}: {first.message}" in problems, (name, problems)
                assert str(table.get_row_at(index)[0]) == "✗", name
                flagged += 1
            else:
                assert "No problems found." in problems, name
                stats = str(screen.query_one("#stats", Static).render())
                assert "example" in stats and ", template" in stats, name  # "1 example" or "8 examples"
                valid += 1
        assert app.is_running and screen is app.screen
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert errors == [], errors
    assert flagged >= 11 and flagged + valid == len(files)
    SECTION.add("pane", len(files), flagged, valid, "no exception, no error notification; the dashboard stays up")
    SECTION.write_if_complete()
