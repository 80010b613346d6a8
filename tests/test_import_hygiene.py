"""The engine never imports textual; the dashboard starts without torch (each in a fresh process)."""

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(output.split())


@pytest.mark.parametrize(
    "module",
    ["tui_ft.engine.data", "tui_ft.engine.data.templates", "tui_ft.engine.models", "tui_ft.engine.data.stats", "tui_ft.cli"],
)
def test_engine_never_imports_textual(module):
    modules = imported_after(f"import {module}")
    assert module in modules
    assert not any(name == "textual" or name.startswith("textual.") for name in modules)


def engine_modules() -> list[str]:
    import pkgutil

    import tui_ft.engine

    return [m.name for m in pkgutil.walk_packages(tui_ft.engine.__path__, "tui_ft.engine.")]


def test_every_engine_module_is_headless():
    names = engine_modules()
    assert {"tui_ft.engine.runs.worker", "tui_ft.engine.generation.fast_cpu.llama_decoder"} <= set(names)
    modules = imported_after("; ".join(f"import {n}" for n in names))
    assert {"tui_ft.engine.data", "tui_ft.engine.models", "tui_ft.engine.training.trainer"} <= modules
    assert "textual" not in modules


@pytest.mark.parametrize("package", ["tui_ft.engine.runs", "tui_ft.engine.data", "tui_ft.engine.evaluation",
                                     "tui_ft.engine.models", "tui_ft.engine.generation", "tui_ft.views.bench_table",
                                     "tui_ft.views.run_monitor"])
def test_packages_the_dashboard_uses_load_neither_torch_nor_transformers(package):
    modules = imported_after(f"import {package}")
    assert package in modules
    for heavy in ("torch", "transformers", "peft"):
        assert heavy not in modules, f"importing {package} imports {heavy}"


def test_dashboard_starts_without_torch():
    modules = imported_after("import tui_ft.ui.app; import tui_ft.cli")
    assert "tui_ft.ui.app" in modules and "textual" in modules
    for heavy in ("torch", "transformers", "peft"):
        assert heavy not in modules, f"{heavy} is imported at dashboard start"


def test_cli_help_is_fast_and_lists_commands():
    result = subprocess.run([sys.executable, "-m", "tui_ft", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in ("data", "models"):
        assert command in result.stdout


DATASETS_PANE_CODE = """
import asyncio, shutil, sys, tempfile
from pathlib import Path
import tui_ft.ui.app
from tui_ft.ui.app import TuiFtApp

home = Path(tempfile.mkdtemp())
shutil.copytree(sys.argv[1], home / "datasets")

class App(TuiFtApp):
    CSS_PATH = str(Path(tui_ft.ui.app.__file__).with_name("app.tcss"))
    PREBUILT_MODES = ()

async def main():
    app = App(home)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(600):
            await pilot.pause(0.1)
            text = str(app.screen.query_one("#example").render())
            if "tokens" in text and "trained" in text:
                break
        print("EXAMPLE", text.splitlines()[0])
    print("MODULES", " ".join(sys.modules))

asyncio.run(main())
"""


def test_datasets_pane_tokenizes_without_importing_transformers_here(default_model_path):
    """The tokenizer runs in a child process: the dashboard's own process never imports it."""
    from conftest import REPO

    done = subprocess.run([sys.executable, "-c", DATASETS_PANE_CODE, str(REPO / "datasets")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("EXAMPLE", "MODULES")))
    assert "tokens" in lines["EXAMPLE"] and "trained" in lines["EXAMPLE"]  # the child answered
    modules = set(lines["MODULES"].split())
    assert "tui_ft.engine.data.tokenizer_process" in modules
    for heavy in ("torch", "transformers", "tokenizers"):
        assert heavy not in modules, f"{heavy} was imported by the dashboard's process"
