"""Every key binding of the dashboard, with ids so users can remap them (``App.set_keymap``).

Digits switch panes from anywhere except an input, where they type digits: app-level
bindings are not priority bindings, so a focused ``Input`` consumes the key first.
"""

from __future__ import annotations

from textual.binding import Binding

PANES = (
    ("1", "datasets", "Datasets"),
    ("2", "train", "Train"),
    ("3", "runs", "Runs"),
    ("4", "chat", "Chat"),
    ("5", "benchmark", "Benchmark"),
)

APP_BINDINGS = [
    *(
        Binding(key, f"switch_mode('{mode}')", label, id=f"pane.{mode}", tooltip=f"Show the {label} pane")
        for key, mode, label in PANES
    ),
    Binding("question_mark,f1", "help", "Help", id="app.help", key_display="?", tooltip="List every key"),
    Binding("q", "quit", "Quit", id="app.quit", show=False, tooltip="Quit (training runs keep going)"),
    Binding("ctrl+q", "quit", "Quit", id="app.quit_anywhere", tooltip="Quit (training runs keep going)", priority=True),
]

DATASET_BINDINGS = [
    Binding("right,n", "example(1)", "Next example", id="datasets.next", tooltip="Show the next example"),
    Binding("left,p", "example(-1)", "Prev example", id="datasets.prev", tooltip="Show the previous example"),
    Binding("t", "toggle_template", "Template", id="datasets.template", tooltip="Switch between chat and alpaca templates"),
    Binding("a", "toggle_train_on_prompt", "Loss on all", id="datasets.mask", tooltip="Compute the loss on every token, or on replies only"),
    Binding("r", "rescan", "Rescan", id="datasets.rescan", tooltip="Read datasets/ again"),
]
