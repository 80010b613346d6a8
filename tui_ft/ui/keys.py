"""Every key binding of the dashboard, with ids so users can remap them (``App.set_keymap``).

Digits switch panes except where a text field would type them: they are priority bindings
whose action the app refuses while the focused widget takes printable keys (an Input, a
Select's type-to-search), so the field gets the digit. The Chat prompt takes no digit while it
is empty, so there digits switch panes until something is typed. ``alt+1``…``alt+5`` and
``ctrl+pageup``/``ctrl+pagedown`` switch from anywhere, text fields included (priority: an
Input would type alt+1's ``1``, a scrolling container takes ctrl+pageup; a terminal's ESC 1 is
read as alt+1: ``compat.read_escape_digits_as_alt``). Escape leaves a
text field. The pane keys are shown in the tab strip at the top of every pane
(``widgets/pane_tabs.py``), so the footer keeps its room for the pane's own keys and ``?``.
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


def _pane_bindings(key: str, mode: str, label: str) -> list[Binding]:
    """The digit and alt+digit of one pane; one line in the help screen (the same description)."""
    tooltip = f"The {label} pane; alt+{key} in text fields too"
    return [Binding(key, f"pane_key('{mode}')", label, id=f"pane.{mode}", show=False, priority=True, tooltip=tooltip),
            Binding(f"alt+{key}", f"show_pane('{mode}')", label, id=f"pane.{mode}.anywhere", show=False, priority=True,
                    tooltip=tooltip)]


APP_BINDINGS = [
    *(binding for key, mode, label in PANES for binding in _pane_bindings(key, mode, label)),
    Binding("ctrl+pageup", "next_pane(-1)", "Previous pane", id="pane.previous", show=False, priority=True,
            tooltip="The pane to the left, in text fields too"),
    Binding("ctrl+pagedown", "next_pane(1)", "Next pane", id="pane.next", show=False, priority=True,
            tooltip="The pane to the right, in text fields too"),
    # No key_display: inside a text field `?` types, and the footer then shows f1, the key that works.
    Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="List every key"),
    Binding("escape", "leave_field", "Leave field", id="app.leave_field",
            tooltip="Leave the text field: digits and letters are keys again"),
    Binding("q", "quit_outside_fields", "Quit", id="app.quit", show=False, tooltip="Quit (training runs keep going)"),
    # Not in the footer (its room goes to the pane's keys): the help screen and the palette list it.
    Binding("ctrl+q", "quit", "Quit", id="app.quit_anywhere", show=False, tooltip="Quit (training runs keep going)",
            priority=True),
]

EXAMPLE_KEYS = Binding.Group("Example")
DATASET_BINDINGS = [
    # One footer entry, "n p Example", for the pair: the footer keeps room for `?` at 80 columns.
    Binding("right,n", "example(1)", "Next example", id="datasets.next", tooltip="Show the next example", group=EXAMPLE_KEYS),
    Binding("left,p", "example(-1)", "Prev example", id="datasets.prev", tooltip="Show the previous example",
            group=EXAMPLE_KEYS),
    Binding("t", "toggle_template", "Template", id="datasets.template", tooltip="Switch between chat and alpaca templates"),
    Binding(
        "a", "toggle_train_on_prompt", "Loss on all", id="datasets.mask", tooltip="Compute the loss on every token, or on replies only"
    ),
    Binding("r", "rescan", "Rescan", id="datasets.rescan", tooltip="Read datasets/ again"),
]

# -- Chat pane -------------------------------------------------------------------------------
# ctrl keys, because the prompt input has focus; ctrl+e and ctrl+w are priority bindings since
# the input would otherwise take them (end of line, which the End key still does; delete a word,
# which ctrl+backspace still does). The reward keys are left out of the footer (its room is
# taken at 80 columns): the help screen and the palette list them.
CHAT_BINDINGS = [
    Binding(
        "escape", "stop", "Stop", id="chat.stop", tooltip="Stop the reply being generated; when idle, leave the prompt so 1-5 switch panes"
    ),
    Binding("ctrl+b", "toggle_compare", "Compare", id="chat.compare", tooltip="Answer with the base model and the tuned run side by side"),
    Binding("ctrl+r", "rate", "Rate", id="chat.rate", tooltip="Rate the last reply: helpfulness, accuracy, clarity (1–5)"),
    Binding("ctrl+n", "new_conversation", "New", id="chat.new", tooltip="Start a new conversation"),
    Binding("ctrl+s", "settings", "Settings", id="chat.settings",
            tooltip="Sampling settings, the system prompt, best-of-n and the reward model"),
    Binding("ctrl+e", "export", "Export", id="chat.export", priority=True, tooltip="Export the transcript to Markdown"),
    Binding("ctrl+l", "pick_model", "Model", id="chat.model", tooltip="Pick a model or run"),
    Binding("ctrl+w", "pick_reward", "Reward model", id="chat.reward", priority=True, show=False,
            tooltip="Pick a reward model (a --method reward run): every reply shows its reward; best-of-n "
                    "(n in ctrl+s) shows its favourite of n sampled replies"),
    Binding("ctrl+o", "next_candidate", "Next candidate", id="chat.candidate", show=False,
            tooltip="Best-of-n: show the next of the last prompt's sampled replies and its reward "
                    "(ratings and the conversation go on from the one shown)"),
]

# The rating bar is a modal screen: its digits never reach the prompt input or the pane keys.
CHAT_RATING_BINDINGS = [
    *(
        Binding(str(n), f"score({n})", "Score", id=f"chat.rating.score{n}", show=n == 1, key_display="1-5",
              tooltip="Give this score to the current question")
        for n in range(1, 6)
    ),
    Binding("backspace", "undo", "Undo", id="chat.rating.undo", tooltip="Take back the last score"),
    Binding("b", "target('base')", "Base", id="chat.rating.base", show=False, tooltip="Rate the base model's reply"),
    Binding("t", "target('tuned')", "Tuned", id="chat.rating.tuned", show=False, tooltip="Rate the tuned run's reply"),
    Binding("escape", "cancel", "Cancel", id="chat.rating.cancel", tooltip="Close without rating"),
]

CHAT_DIALOG_BINDINGS = [
    Binding("escape", "cancel", "Cancel", id="chat.dialog.cancel", tooltip="Close without saving"),
]

# Benchmark pane. Enter on a cell drills into it when it holds a result, else evaluates it
# (DataTable's own enter key); these are the same actions under their own keys.
BENCHMARK_BINDINGS = [
    Binding("e", "evaluate", "Evaluate", id="benchmark.evaluate",
            tooltip="Evaluate the marked rows (or the current one) on the current column, as a detached job"),
    Binding("space", "mark", "Mark", id="benchmark.mark", tooltip="Mark or unmark the current row for evaluation"),
    Binding("b", "next_column", "Column", id="benchmark.column",
            tooltip="Go to the next benchmark or perplexity dataset (every file in datasets/ that can be scored)"),
    Binding("d", "drill", "Items", id="benchmark.drill", tooltip="Show every item of the current cell with ✓/✗"),
    Binding("o", "sort", "Sort", id="benchmark.sort", tooltip="Sort by the current column, best first; again for worst first"),
    Binding("x", "export", "Export", id="benchmark.export", tooltip="Export the table to CSV and JSON in bench/exports/"),
    Binding("s", "stop", "Stop", id="benchmark.stop", show=False, tooltip="Stop the evaluation running in the current cell"),
    Binding("r", "reload", "Reload", id="benchmark.reload", show=False, tooltip="Read models, datasets and results again"),
]

BENCHMARK_ITEMS_BINDINGS = [
    Binding("escape,backspace", "close", "Back", id="benchmark.items.close", tooltip="Back to the Benchmark table"),
]

# Train pane. ctrl+ keys, so that letters and digits always type into the form's inputs.
TRAIN_BINDINGS = [
    Binding("ctrl+s", "start_run", "Start run", id="train.start",
            tooltip="Check the form and start the run as a detached worker, then show it in the Runs pane"),
    Binding("ctrl+r", "reload_choices", "Reload", id="train.reload",
            tooltip="Read the models, finished runs and datasets/ again"),
    Binding("ctrl+o", "method_defaults", "Defaults", id="train.defaults",
            tooltip="Put the method's default learning rate, epochs and beta back in the form"),
    Binding("ctrl+l", "load_recipe", "Load recipe", id="train.recipe.load",
            tooltip="Fill the form from a recipe file (YAML; recipes/ holds the shipped ones)"),
    # Not ctrl+e or ctrl+w: a text field takes those (end of line, delete a word).
    Binding("ctrl+t", "save_recipe", "Save recipe", id="train.recipe.save",
            tooltip="Save the form as a recipe file: tui-ft train --config FILE trains it"),
]

# Runs pane.
RUNS_BINDINGS = [
    Binding("space", "toggle_mark", "Mark", id="runs.mark", tooltip="Mark or unmark the run: marked runs' loss curves are overlaid"),
    Binding("s", "stop_run", "Stop", id="runs.stop", tooltip="Stop the run: it saves a checkpoint at the next step"),
    Binding("r", "resume_run", "Resume", id="runs.resume", tooltip="Resume a stopped, died or failed run from its last checkpoint"),
    Binding("e", "export_run", "Export", id="runs.export",
            tooltip="Export the finished run: a merged folder, a GGUF file or an Ollama folder (asks which and where)"),
    Binding("l", "toggle_log", "Log", id="runs.log", tooltip="Show the worker's log instead of the plots, or back"),
    Binding("p", "next_plot", "Plot", id="runs.plot", tooltip="Show the next plot (a tall terminal shows all four)"),
    Binding("c", "clone_run", "Clone", id="runs.clone", tooltip="Fill the Train form with this run's settings, to train a variant"),
    Binding("f", "diff_runs", "Diff", id="runs.diff",
            tooltip="Compare settings: the marked runs and this one, only the settings that differ"),
    Binding("d", "delete_run", "Delete", id="runs.delete",
            tooltip="Delete the run and its checkpoints, after asking (a live run is stopped first)"),
    Binding("o", "toggle_smoothing", "Smooth", id="runs.smooth",
            tooltip="Smooth the per-step curves (moving average, raw points faint behind), or show them raw"),
    Binding("n", "rename_run", "Rename", id="runs.rename",
            tooltip="Rename the run (a stopped, failed or finished one): its checkpoints and scores move with it"),
    Binding("slash", "filter_runs", "Filter", id="runs.filter", key_display="/",
            tooltip="Show only the runs whose name, state, method, model or dataset contain the words typed; "
                    "escape clears"),
]
RUN_FILTER_BINDINGS = [
    Binding("escape", "clear", "Clear filter", id="runs.filter.clear", tooltip="Show every run again"),
    Binding("enter,down", "done", "To the list", id="runs.filter.done", tooltip="Keep the filter and go to the list"),
]

# How keys read in the help screen and the palette; Textual's names for the rest.
KEY_NAMES = {"question_mark": "?", "slash": "/", "right": "→", "left": "←"}


def key_label(binding: Binding) -> str:
    """Every key of ``binding`` as a user reads it: ``question_mark,f1`` gives ``? / F1``.

    A binding's ``key_display`` is what the footer shows, where room is short; it stands for
    the whole binding only when the binding has a single key (``1-5`` for a score key).
    """
    names = binding.key.split(",")
    if binding.key_display and len(names) == 1:
        return binding.key_display
    return " / ".join(KEY_NAMES.get(name, name.upper() if name[:1] == "f" and name[1:].isdigit() else name) for name in names)
