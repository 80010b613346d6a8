"""The private Textual and textual-plotext names tui_ft relies on (tui_ft/ui/compat.py) still exist.

Run after moving a version bound in pyproject.toml: a missing name fails here, by name, with
what tui_ft needs it for, instead of as a slow dashboard or an AttributeError mid-frame.
"""

from __future__ import annotations

import importlib
import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest

from tui_ft.ui import compat
from tui_ft.ui.compat import PRIVATE_NAMES, PrivateName

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tui_ft" / "ui" / "compat.py"
DISTRIBUTIONS = {"textual": "textual", "textual_plotext": "textual-plotext", "plotext": "plotext"}


def installed(owner: str) -> str:
    """The distribution and version that ``owner`` ("module:Class") comes from."""
    distribution = DISTRIBUTIONS[owner.split(".")[0].split(":")[0]]
    return f"{distribution} {metadata.version(distribution)}"


def describe(entry: PrivateName) -> str:
    return f"{entry.owner}.{entry.name}"


def resolve(owner: str) -> type:
    """The class of ``owner`` ("module:Class"), or the module itself (owner "module": a module-level name)."""
    module_name, _, class_name = owner.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        pytest.fail(f"module {module_name} is gone from the installed {installed(owner)} ({error}); "
                    f"tui_ft/ui/compat.py looks up private names in it")
    if not class_name:
        return module
    cls = getattr(module, class_name, None)
    if cls is None:
        pytest.fail(f"{owner} is gone from the installed {installed(owner)}; tui_ft/ui/compat.py looks up private names on it")
    return cls


def has_attribute(cls: type, name: str) -> bool:
    """Whether ``cls`` has ``name``: on the class (methods, descriptors) or set on a new instance."""
    if hasattr(cls, name):
        return True
    # Instance attributes are set in __init__; every owner in the table is made without arguments
    # outside an app. vars(), not hasattr: some properties need a running app.
    return name in vars(cls())


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=describe)
def test_a_private_name_tui_ft_relies_on_still_exists(entry: PrivateName):
    cls = resolve(entry.owner)
    assert has_attribute(cls, entry.name), (
        f"{describe(entry)} is missing from the installed {installed(entry.owner)}. tui_ft uses it to {entry.why}. "
        f"Find what replaced it and change tui_ft/ui/compat.py"
        + (f" and the override in {entry.hook}" if entry.hook else " (its call sites need not change)")
        + ", or keep the version bound in pyproject.toml."
    )
    if entry.params:
        method = getattr(cls, entry.name)
        assert callable(method), f"{describe(entry)} in {installed(entry.owner)} is no longer a method"
        parameters = inspect.signature(method).parameters
        missing = [name for name in entry.params if name not in parameters]
        assert not missing, (
            f"{describe(entry)} in {installed(entry.owner)} no longer takes {', '.join(missing)} "
            f"(it takes {', '.join(parameters)}); tui_ft uses it to {entry.why}: change tui_ft/ui/compat.py"
            + (f" and the override in {entry.hook}" if entry.hook else "")
        )


def test_every_private_name_compat_uses_is_in_its_table():
    # A private access added to compat.py without a row in PRIVATE_NAMES would go unchecked.
    code = "\n".join(line.split("#")[0] for line in COMPAT.read_text().splitlines())
    used = set(re.findall(r"\.(_[a-z]\w*)", code))
    listed = {entry.name for entry in PRIVATE_NAMES}
    listed |= {part for entry in PRIVATE_NAMES for part in entry.owner.split(":")[0].split(".") if part.startswith("_")}
    assert used <= listed, f"tui_ft/ui/compat.py uses {sorted(used - listed)} without a row in PRIVATE_NAMES"


def test_the_rest_of_tui_ft_reaches_private_names_only_through_compat():
    names = sorted({entry.name for entry in PRIVATE_NAMES if entry.name.startswith("_")})
    access = re.compile(r"\.(" + "|".join(names) + r")\b")
    override = re.compile(r"\bdef (" + "|".join(names) + r")\(")
    private_import = re.compile(r"^\s*(from|import)\s+(textual|textual_plotext|plotext)(\.\w+)*\._\w*", re.MULTILINE)
    hooks = {(entry.hook, entry.name) for entry in PRIVATE_NAMES if entry.hook}
    found = []
    for path in sorted((ROOT / "tui_ft").rglob("*.py")):
        if path == COMPAT:
            continue
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            for match in override.finditer(code):
                if (relative, match.group(1)) not in hooks:
                    found.append(f"{relative}:{number}: overrides {match.group(1)} (not a hook listed in PRIVATE_NAMES)")
            for match in access.finditer(code):
                name = match.group(1)
                if (relative, name) in hooks and f"super().{name}(" in code:
                    continue  # an override calling the method it overrides
                found.append(f"{relative}:{number}: uses {name} directly (use a function of tui_ft/ui/compat.py)")
        for match in private_import.finditer(text):
            found.append(f"{relative}: imports a private module: {match.group(0).strip()}")
    assert not found, "\n".join(found)


def test_every_hook_is_still_overridden_where_the_table_says():
    # A hook row whose override moved or went would keep checking a name nothing uses.
    for entry in PRIVATE_NAMES:
        if entry.hook:
            text = (ROOT / entry.hook).read_text()
            assert f"def {entry.name}(" in text, f"{entry.hook} no longer overrides {entry.name}: update PRIVATE_NAMES"


def test_compat_functions_work_on_a_plotext_figure():
    # The one function usable without an app: the sized figure draws at that size.
    from textual_plotext.plot import Plot

    figure = Plot()
    figure.plot([1, 2, 3], [3, 1, 2])
    figure.plotsize(30, 8)
    compat.set_figure_size(figure, 30, 8)
    lines = figure.build().splitlines()
    assert len(lines) == 8 and max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in lines) == 30
