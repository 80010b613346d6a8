"""Text from files, made safe to show: no terminal escapes, never read as markup.

Run folders, datasets and results may come from someone else (a colleague's run, a downloaded
dataset). Their text reaches the terminal in the CLI's tables and in the dashboard; written as it
is, an escape sequence in it would act on the user's terminal (OSC 52 writes the clipboard, others
set the window title or clear the screen), and ``[…]`` in it would be read as Rich or Textual
markup (``[link=…]`` becomes a link; ``[/x]`` raises ``MarkupError``, which took the dashboard down).

:func:`clean` removes escape sequences and control characters (C0, DEL and C1) but newline and
tab; :func:`plain` wraps the result in a Rich ``Text``, which Rich and Textual show as it is (no
markup). Neither imports torch or textual, so the CLI and the dashboard share them.
"""

from __future__ import annotations

import re

# Escape sequences as terminals read them (ECMA-48), 7-bit (ESC ...) and 8-bit (C1) forms:
# strings (OSC, DCS, SOS, PM, APC) up to their terminator (BEL or ST), control sequences
# (CSI), then any other escape (ESC, intermediate bytes, a final byte). An unterminated string
# is not swallowed whole: its ESC alone goes (below), and the rest shows as inert text.
_SEQUENCE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC, DCS, SOS, PM, APC
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b[ -/]*[0-~]"  # two-byte and nF escapes
)
# Control characters left after that: C0 but tab and newline, DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: object) -> str:
    """``text`` (made a ``str``) without escape sequences and control characters, newline and tab kept.

    Text with no control character (nearly all) is returned as it is, at the cost of one search.
    """
    text = text if isinstance(text, str) else str(text)
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def plain(text: object, style: str = ""):
    """``clean(text)`` as a Rich ``Text`` in ``style``: shown as it is, never parsed as markup."""
    from rich.text import Text

    return Text(clean(text), style=style)
