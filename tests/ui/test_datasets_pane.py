"""Pilot tests of the Datasets pane: file list, problems, example with the loss mask."""

from textual.widgets import DataTable, Static

from tui_ft.ui.app import TuiFtApp

from polling import settle_workers


async def wait_ready(app, pilot):
    await settle_workers(pilot, rounds=2)


async def test_lists_files_with_format_and_validity(ui_home):
    (ui_home / "datasets" / "broken.jsonl").write_text('{"instruction": "x"}\nnot json\n')
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(app, pilot)
        screen = app.screen
        table = screen.query_one("#files", DataTable)
        rows = {str(table.get_row_at(i)[2]): table.get_row_at(i) for i in range(table.row_count)}
        assert str(rows["seed_instructions.jsonl"][0]) == "✓"
        assert rows["seed_instructions.jsonl"][3] == "instruction"
        assert str(rows["seed_instructions.jsonl"][1]) == "8"
        assert rows["seed_benchmark.jsonl"][3] == "benchmark"
        assert str(rows["broken.jsonl"][0]) == "✗"
        table.move_cursor(row=list(rows).index("broken.jsonl"))
        await pilot.pause()
        problems = str(screen.query_one("#problems", Static).render())
        assert "broken.jsonl:1: missing field 'response' or 'output'" in problems
        assert "broken.jsonl:2: invalid JSON" in problems


async def test_example_shows_trained_tokens_and_template_toggle(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(app, pilot)
        screen = app.screen
        table = screen.query_one("#files", DataTable)
        names = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("seed_instructions.jsonl"))
        await wait_ready(app, pilot)
        rendered = screen.query_one("#example", Static).render()
        assert "template chat" in str(rendered), str(screen.query_one("#stats", Static).render())
        trained = "".join(rendered.plain[s.start : s.end] for s in rendered.spans if "green" in str(s.style))
        assert "The capital of France is Paris.<|im_end|>" in trained
        assert "What is the capital" not in trained
        await pilot.press("t")
        rendered = screen.query_one("#example", Static).render()
        assert "### Instruction:\nWhat is the capital of France?" in rendered.plain
        await pilot.press("n")
        assert "Explain gravity" in screen.query_one("#example", Static).render().plain
        await wait_ready(app, pilot)
        stats = str(screen.query_one("#stats", Static).render())
        assert "8 examples, template alpaca" in stats


async def test_validity_marks_are_on_screen_at_80x24(ui_home):
    """Every row's ✓/✗ is inside the visible part of the file list, with the longest shipped names."""
    (ui_home / "datasets" / "broken.jsonl").write_text("not json\n")
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(app, pilot)
        table = app.screen.query_one("#files", DataTable)
        names = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        assert max(map(len, names)) >= 28, names  # names long enough to push a last column off-screen
        assert table.scroll_y == 0 and table.row_count < table.size.height
        shown = {name: table.render_line(row + 1).text for row, name in enumerate(names)}  # line 0: the header
        for name, line in shown.items():
            assert name[:20] in line, (name, line)  # the name is readable beside its mark
        assert "✗" in shown["broken.jsonl"] and "✓" not in shown["broken.jsonl"], shown
        assert "✓" in shown["seed_instructions.jsonl"], shown


async def test_a_failing_tokenizer_process_is_one_notification_and_the_pane_stays_up(ui_home, monkeypatch):
    from tui_ft.engine.data.tokenizer_process import TokenizerProcess

    def died(self, *args):
        raise RuntimeError("A process in the process pool was terminated abruptly\nmore detail")

    monkeypatch.setattr(TokenizerProcess, "render", died)
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(app, pilot)
        await pilot.press("n")
        await wait_ready(app, pilot)
        messages = [n.message for n in app._notifications]
        assert "Tokenizing an example: A process in the process pool was terminated abruptly" in messages, messages
        await pilot.press("2")
        assert app.current_mode == "train"  # still answering keys


async def test_a_preference_file_shows_labelled_pairs_and_r_keeps_the_cursor(ui_home):
    (ui_home / "datasets" / "one.jsonl").write_text('{"instruction": "Say hi.", "response": "Hi."}\n')
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(app, pilot)
        screen = app.screen
        table = screen.query_one("#files", DataTable)
        names = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("one.jsonl"))
        await wait_ready(app, pilot)
        assert ", 1 example, valid" in str(screen.query_one("#summary", Static).render())  # not "1 examples"

        table.move_cursor(row=names.index("dpo_concise.jsonl"))
        await wait_ready(app, pilot)
        assert "preference, 45 pairs, valid" in str(screen.query_one("#summary", Static).render())
        chosen = screen.query_one("#example", Static).render()
        assert chosen.plain.startswith("pair 1/45 · chosen (line 1)") and "green = the reply DPO makes more likely" in chosen.plain
        await pilot.press("n")
        await wait_ready(app, pilot)
        rejected = screen.query_one("#example", Static).render()
        assert rejected.plain.startswith("pair 1/45 · rejected (line 1)")
        assert "red = the reply DPO makes less likely" in rejected.plain and "green" not in rejected.plain
        scored = "".join(rejected.plain[s.start : s.end] for s in rejected.spans if "red" in str(s.style))
        assert len(scored) > 40  # the rejected reply is shown in red

        await pilot.press("r")  # read datasets/ again: the cursor and the example stay where they were
        await wait_ready(app, pilot)
        assert str(table.get_row_at(table.cursor_row)[2]) == "dpo_concise.jsonl"
        assert screen.query_one("#example", Static).render().plain.startswith("pair 1/45 · rejected")
