"""The ``tui-ft`` entry point: subcommands call the engine; no subcommand opens the dashboard.

Each subcommand lives in its own module under ``tui_ft/commands/`` with ``add_parser`` and
``run``; they are discovered here, so adding a command never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import tui_ft.commands


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2 unless given."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (argparse prints the whole usage block)."""

    def error(self, message: str):
        # "tui-ft:" first, as every CLI error (a subcommand's parser is "tui-ft train").
        self.exit(2, f"tui-ft: {message} (see {self.prog} --help)\n")


def _command_modules() -> list:
    modules = [importlib.import_module(f"tui_ft.commands.{m.name}") for m in pkgutil.iter_modules(tui_ft.commands.__path__)]
    return sorted((m for m in modules if hasattr(m, "add_parser")), key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every discovered subcommand."""
    parser = OneLineParser(prog="tui-ft", description="Fine-tune language models from a terminal.")
    parser.add_argument("--home", type=Path, help="the workspace holding datasets/ and checkpoints/ (default: $TUI_FT_HOME or .)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.add_parser(commands)
    return parser


def workspace(home: Path | None) -> Path:
    """The workspace: ``--home``, else ``$TUI_FT_HOME``, else the current folder."""
    return Path(home or os.environ.get("TUI_FT_HOME") or ".").expanduser().resolve()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (also used by ``python -m tui_ft``)."""
    # Before torch loads OpenMP: spinning threads crawl when the CPU is shared with a training
    # run or the dashboard (see launch_run, which measured it); the user's setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Deprecation notices from the libraries are for their callers (us), not for the user.
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from tui_ft.commands.download_bar import download_display
    from tui_ft.engine.data.readers import DatasetError
    from tui_ft.engine.models import ModelError, showing_downloads
    from tui_ft.safe_text import clean

    args = build_parser().parse_args(argv)
    args.home = workspace(args.home)
    if not args.command:
        if not args.home.is_dir():
            print(f"tui-ft: {args.home}: no such folder", file=sys.stderr)
            return 2
        from tui_ft.ui.app import run_dashboard

        return run_dashboard(args.home)
    try:
        with showing_downloads(download_display()):  # a Hub model any command fetches: a bar on stderr
            return args.handler(args) or 0
    except DatasetError as error:  # a recipe's problems too (RecipeError)
        for problem in error.problems:  # file names and contents: someone else's text (tui_ft/safe_text.py)
            print(f"tui-ft: {clean(problem)}", file=sys.stderr)
        return 1
    except (ModelError, UserError) as error:
        print(f"tui-ft: {clean(error)}", file=sys.stderr)
        return getattr(error, "status", 2)
    except KeyboardInterrupt:
        print("tui-ft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
