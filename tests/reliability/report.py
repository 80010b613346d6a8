"""``docs/reliability.md``: each reliability test module writes its own section of the report.

A section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers and is
rewritten only when every row the module promises was recorded (the whole module ran and
passed), so running one test alone never truncates the table. Rows hold counts and outcomes,
never timings or timestamps: the file changes only when the tests or their results do.

A plain test run leaves the tracked report alone (a test run must leave the working tree clean):
sections are written only when ``TUI_FT_WRITE_REPORT=1`` is set, which ``make report`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
WRITE_REPORT = os.environ.get("TUI_FT_WRITE_REPORT") == "1"
PREAMBLE = "# Reliability\n\nFaults and bad inputs tried by the test suite; each section is written by the tests named in it.\n"


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` between its markers in ``path``, keeping every other section as it is.

    The markers are the section's first and last lines (``<!-- NAME:start -->`` and
    ``<!-- NAME:end -->``); a section not in the file yet is appended. Written atomically.
    """
    lines = section.strip("\n").split("\n")
    start, end = lines[0], lines[-1]
    text = path.read_text(encoding="utf-8") if path.exists() else PREAMBLE
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section.strip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class Section:
    """The rows of one report section, written once all the expected rows are in.

    Args:
        name: The marker name (``faults`` gives ``<!-- faults:start -->``).
        title: The section's heading.
        intro: Paragraph lines under the heading (what was tried, by which test file).
        columns: The table's column names.
        expected: The keys of every row, in table order; the section is written only when
            each of them was recorded.
    """

    def __init__(self, name: str, title: str, intro: list[str], columns: list[str], expected: list[str]):
        self.name, self.title, self.intro, self.columns = name, title, intro, columns
        self.expected = list(expected)
        self.rows: dict[str, list[str]] = {}

    def add(self, key: str, *cells) -> None:
        """Record the row ``key`` (one of ``expected``) with its cells."""
        assert key in self.expected, f"{key!r} is not a row of the {self.name} section"
        assert len(cells) == len(self.columns), (key, cells)
        self.rows[key] = [str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells]

    def render(self) -> str:
        table = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        table += ["| " + " | ".join(self.rows[key]) + " |" for key in self.expected]
        return "\n".join([f"<!-- {self.name}:start -->", f"## {self.title}", "", *self.intro, "", *table,
                          f"<!-- {self.name}:end -->"])

    def write_if_complete(self, path: Path = REPORT) -> bool:
        """Rewrite the section when every expected row was recorded and ``make report`` asked; True when written."""
        if not WRITE_REPORT or set(self.rows) != set(self.expected):
            return False
        replace_section(path, self.render())
        return True
