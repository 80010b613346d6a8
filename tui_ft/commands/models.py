"""``tui-ft models``: the model references a user can pick, with their local folders."""

from __future__ import annotations

import orjson

ORDER = 20


def add_parser(commands) -> None:
    parser = commands.add_parser("models", help="list models (converts the default model once)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tui_ft.engine.models import ensure_default_model, list_models
    from tui_ft.safe_text import plain

    console = Console(stderr=True)
    with console.status("preparing the default model") as status:
        ensure_default_model(lambda what, fraction: status.update(f"default model: {what} ({fraction:.0%})"))
    models = list_models(args.home)
    if args.json:
        print(orjson.dumps(models, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = Table("ref", "kind", "path")
    for model in models:
        path = model["path"] + (f" + {model['adapter']}" if model.get("adapter") else "")
        table.add_row(plain(model["ref"]), plain(model["kind"]), plain(path))  # names from run folders: plain text
    Console().print(table)
    return 0
