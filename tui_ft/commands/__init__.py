"""CLI subcommands, one module each, discovered by :mod:`tui_ft.cli`.

A module defines ``add_parser(subparsers)`` (which sets ``handler=run`` on its parser),
``run(args) -> int`` and optionally ``ORDER`` (its place in ``--help``).
"""
