"""The Train pane's form: one row a :class:`~tui_ft.engine.runs.config.TrainConfig` field, errors beside each.

The form only collects text: :meth:`TrainForm.config` turns it into a ``TrainConfig`` with the
engine's own conversion (``TrainConfig.from_dict``), and the engine's ``validate_config``
decides what is wrong. Errors arrive as ``(field, message)`` pairs and are shown under the
field of that name. Method-specific rows (freeze layers, LoRA, DPO) are hidden for other
methods, so tab only visits what matters.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from tui_ft.engine.data import training_refusal
from tui_ft.engine.runs.config import ConfigError, TrainConfig, method_defaults
from tui_ft.safe_text import plain

METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning", "freeze": "freeze", "dpo": "DPO",
                "reward": "a reward model"}
METHOD_CHOICES = (("LoRA adapter", "lora"), ("QLoRA: LoRA on a 4-bit base", "qlora"), ("full fine-tuning", "full"),
                  ("freeze the first N layers", "freeze"), ("DPO on preference pairs", "dpo"),
                  ("reward model on preference pairs", "reward"))
TEMPLATE_CHOICES = (("the model's default", ""), ("chat (the tokenizer's template)", "chat"),
                    ("alpaca (### Instruction / ### Response)", "alpaca"))
DEVICE_CHOICES = (("auto (cuda, mps, else cpu)", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("mps", "mps"))
DPO_MODE_CHOICES = (("LoRA adapter", "lora"), ("full model", "full"))
WEIGHT_DTYPE_CHOICES = (("auto: frozen weights bf16, trained ones fp32", "auto"), ("float32: every weight", "float32"),
                        ("bfloat16: every weight (pure bf16)", "bfloat16"))
CHECKPOINTING_CHOICES = (("off", "false"), ("on: less memory, about a third slower", "true"))
REPORT_CHOICES = (("metrics.jsonl only", ""), ("TensorBoard too (checkpoints/<run>/tensorboard)", "tensorboard"),
                  ("Weights & Biases too", "wandb"), ("TensorBoard and Weights & Biases", "tensorboard,wandb"))
OPTIONAL = {"max_steps", "freeze_layers", "lr", "name"}  # empty means None: the engine's default
# Numbers: a short field, so what the value means reads right after it ("Eval every 0  about five evaluations").
NUMBERS = {"freeze_layers", "beta", "lora_rank", "lora_alpha", "lora_dropout", "epochs", "max_steps", "lr", "batch_size",
           "grad_accum", "max_length", "eval_every", "save_every", "seed", "nproc"}
DEFAULT_KEYS = ("lr", "epochs", "beta", "lora_targets")  # fields method_defaults() fills


@dataclass(frozen=True)
class Field:
    """One input of the form: a ``TrainConfig`` field, its label and help.

    Attributes:
        methods: The methods it applies to (empty: all).
        lora_only: Also hidden for DPO when DPO trains the full model.
    """

    name: str
    label: str
    placeholder: str = ""
    methods: tuple[str, ...] = ()
    lora_only: bool = False


LORA_METHODS = ("lora", "qlora", "dpo", "reward")
FIELDS = (
    Field("freeze_layers", "Freeze layers", "half", ("freeze",)),
    Field("dpo_mode", "DPO trains", methods=("dpo",)),
    Field("reward_mode", "Reward trains", methods=("reward",)),
    Field("beta", "DPO beta", "0.1", ("dpo",)),
    Field("lora_rank", "LoRA rank", "8", LORA_METHODS, lora_only=True),
    Field("lora_alpha", "LoRA alpha", "16", LORA_METHODS, lora_only=True),
    Field("lora_dropout", "LoRA dropout", "0.05", LORA_METHODS, lora_only=True),
    Field("lora_targets", "LoRA targets", "module names, or all-linear", LORA_METHODS, lora_only=True),
    Field("epochs", "Epochs", "3"),
    Field("max_steps", "Max steps", "none"),
    Field("lr", "Learning rate", "default"),
    Field("batch_size", "Batch size", "8"),
    Field("grad_accum", "Grad accumulation", "1"),
    Field("max_length", "Max length", "512 tokens"),
    Field("gradient_checkpointing", "Recompute layers"),
    Field("eval_every", "Eval every", "0: about five evaluations"),
    Field("save_every", "Save every", "0: only when stopped"),
    Field("seed", "Seed", "42"),
    Field("template", "Template"),
    Field("device", "Device"),
    Field("weight_dtype", "Weights"),
    Field("report_to", "Report to"),
    Field("nproc", "Processes", "1; N: torchrun, one per GPU (batch size stays global)"),
    Field("name", "Run name", "automatic: method-dataset-time"),
)
def _count(text: str) -> int | None:
    return int(text) if text.isdigit() else None


# What a value means, beside the field (issue 19: "Eval every 0" said nothing of "about five
# evaluations"). Given the field's text (empty: the default the form uses) and the method's lr.
MEANINGS = {
    "eval_every": lambda text, lr: "about five evaluations" if _count(text) == 0 else "steps" if _count(text) else "",
    "save_every": lambda text, lr: "only when stopped" if _count(text) == 0 else "steps" if _count(text) else "",
    "max_steps": lambda text, lr: "every epoch runs" if not text else "wins over epochs",
    "freeze_layers": lambda text, lr: "half of the model's layers" if not text else "",
    "lr": lambda text, lr: f"the method's default, {lr}" if not text else "",
    "max_length": lambda text, lr: "tokens",
    "nproc": lambda text, lr: ("" if _count(text) in (None, 1) else f"{text} processes under torchrun, one a GPU"),
}

SELECTS = {"dpo_mode": DPO_MODE_CHOICES, "reward_mode": DPO_MODE_CHOICES, "template": TEMPLATE_CHOICES, "device": DEVICE_CHOICES,
           "weight_dtype": WEIGHT_DTYPE_CHOICES, "gradient_checkpointing": CHECKPOINTING_CHOICES,
           "report_to": REPORT_CHOICES}


def format_value(value) -> str:
    """A config value as the form shows it (lists comma-separated, ``None`` empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as --set takes them, and the on/off lists hold them
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class DatasetChoice:
    """A file in ``datasets/`` as the dataset lists see it: its format, size and first problem."""

    name: str  # relative to datasets/
    path: str
    format: str
    count: int
    problem: str = ""  # the first problem in the file; a file with one is not offered

    @property
    def label(self) -> str:
        unit = ("pair" if self.format == "preference" else "example") + ("" if self.count == 1 else "s")
        return f"{self.name} · {self.count} {unit}"


def not_offered_note(datasets: list[DatasetChoice], method: str, method_label: str) -> str:
    """What the dataset lists leave out for ``method``, and why, in one short line."""
    left_out = [(choice.name, "broken" if choice.problem else choice.format) for choice in datasets
                if choice.problem or training_refusal(method, choice.format)]
    if not left_out:
        return ""
    shown = ", ".join(f"{name} ({why})" for name, why in left_out[:2])
    more = f" and {len(left_out) - 2} more" if len(left_out) > 2 else ""
    return f"{len(left_out)} not for {method_label}: {shown}{more}"  # the count first: a narrow form cuts the rest


class TrainForm(VerticalScroll):
    """Model, dataset, method and hyper-parameters, with inline errors; scrolls on small terminals."""

    DEFAULT_CSS = """
    TrainForm { height: 1fr; padding: 0 1; }
    TrainForm .field { height: auto; }
    TrainForm .field > Label { width: 19; padding: 0 1 0 0; text-align: right; color: $text-muted; }
    TrainForm .field:focus-within > Label { color: $text; text-style: bold; }
    TrainForm .field > Input, TrainForm .field > Select { width: 1fr; max-width: 72; }
    TrainForm .field > Input.-number { width: 12; }
    TrainForm .field > .meaning { width: auto; max-width: 40%; height: 1; padding: 0 1; color: $text-muted; }
    TrainForm .field-error { color: $error; margin: 0 0 0 19; padding: 0 1; height: auto; max-width: 72; }
    TrainForm .field-error.-empty { display: none; }
    TrainForm #form-errors { color: $error; height: auto; padding: 0 1; }
    TrainForm #dataset-note { color: $text-muted; margin: 0 0 0 19; padding: 0 1; height: auto; max-width: 72; }
    TrainForm #dataset-note.-empty { display: none; }
    TrainForm #extra-settings { color: $text-muted; padding: 0 1 0 20; height: auto; }
    TrainForm #extra-settings.-empty { display: none; }
    TrainForm #form-errors.-empty { display: none; }
    TrainForm #start-row { height: auto; padding: 1 0 1 19; }
    TrainForm #launch-status { padding: 1 1 0 1; color: $text-muted; width: 1fr; }
    TrainForm #run-shape { padding: 1 1 0 20; height: auto; color: $text-muted; }
    TrainForm #memory-plan { padding: 0 1 0 20; height: auto; color: $text-muted; }
    TrainForm #memory-plan.-over { color: $error; text-style: bold; }
    TrainForm .-hidden { display: none; }
    """

    def __init__(self, *, id: str | None = None):  # noqa: A002 - Textual's name
        super().__init__(id=id, can_focus=False)  # tab goes straight to the first field
        self.method = "lora"
        self.modes = {"dpo_mode": "lora", "reward_mode": "lora"}  # the mode Selects, as the form last saw them
        defaults = TrainConfig().to_dict() | method_defaults("lora")
        self.initial = {name: format_value(value) for name, value in defaults.items()}
        self._rows: dict[str, Horizontal] = {}  # by field name: looked up without walking the form
        self._errors: dict[str, Static] = {}  # the line under a field, made the first time it has an error
        self._choices: dict[str, list[tuple[str, str]]] = {}  # what each list Select was last given
        self._datasets: list[DatasetChoice] = []  # every file in datasets/, offered or not
        self._wanted: dict[str, str] = {}  # list picks a cloned run asked for, made once the lists hold them
        # Settings a cloned run or a loaded recipe gave that have no field here (eval_split,
        # warmup_ratio…): kept and used, shown on a line of their own, until the next fill.
        self.extra: dict = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="form-errors", classes="-empty")
        yield from self._row("model", "Model", Select([("default", "default")], value="default", allow_blank=False,
                                                      id="field-model", compact=True))
        yield from self._row("model_path", "or model folder",
                             Input(placeholder="a model folder or a Hub id org/name (overrides the list)", id="field-model_path",
                                   compact=True))
        yield from self._row("dataset", "Dataset", Select([], prompt="choose a file in datasets/", id="field-dataset", compact=True))
        # On a line of its own (beside the list, it narrowed the list and cut itself short).
        yield Static("", id="dataset-note", classes="-empty")
        yield from self._row("dataset_hub", "or Hub dataset",
                             Input(placeholder="hf:org/name or hf:org/name:split (overrides the list; fetched at start)",
                                   id="field-dataset_hub", compact=True))
        yield from self._row("eval_dataset", "Eval dataset",
                             Select([], prompt="hold out part of the training set", id="field-eval_dataset",
                                    compact=True))
        yield from self._row("method", "Method", Select(METHOD_CHOICES, value="lora", allow_blank=False,
                                                        id="field-method", compact=True))
        for field in FIELDS:
            if field.name in SELECTS:
                widget = Select(SELECTS[field.name], value=self.initial[field.name], allow_blank=False,
                                id=f"field-{field.name}", compact=True)
            else:
                widget = Input(self.initial.get(field.name, ""), placeholder=self.placeholder(field), id=f"field-{field.name}",
                               compact=True, classes="-number" if field.name in NUMBERS else "")
            yield from self._row(field.name, field.label, widget,
                                 Static(self.meaning(field.name), id=f"meaning-{field.name}", classes="meaning")
                                 if field.name in MEANINGS else None)
        yield Static("", id="extra-settings", classes="-empty")  # "also: eval_split 0 (no field here)"
        yield Static("", id="run-shape")  # "20 examples: 18 trained, 2 held out · 3 steps an epoch · …"
        yield Static("", id="memory-plan")  # the memory plan: "needs ≈ 1.4 GB of 23 GB on cpu"
        with Horizontal(id="start-row"):
            yield Button("Start run  ctrl+s", id="start", variant="primary")
            yield Static("", id="launch-status")

    def _row(self, name: str, label: str, widget, meaning: Static | None = None) -> ComposeResult:
        # Two widgets a row: the form is the largest pane (25 rows), and each widget costs
        # its share of every build, layout and repaint of the Train pane. An error line is
        # made under a field only when it has an error (:meth:`_error_line`).
        with Horizontal(classes="field", id=f"row-{name}") as row:
            self._rows[name] = row
            yield Label(label)
            yield widget
            if meaning is not None:
                yield meaning

    def on_mount(self) -> None:
        self.show_method_fields()

    # -- choices -------------------------------------------------------------------------

    def set_choices(self, models: list[tuple[str, str]], datasets: list[DatasetChoice]) -> None:
        """Fill the model list with ``(label, value)`` pairs and the dataset lists with the files
        the method trains on, keeping the current picks."""
        selects = [self.query_one(f"#field-{name}", Select) for name in ("model", "dataset", "eval_dataset")]
        if not all(select.is_mounted for select in selects):
            # A pane built in the background can list its choices before a Select has composed
            # its menu (setting options then fails): try again in a moment.
            self.set_timer(0.05, lambda: self.set_choices(models, datasets))
            return
        self._datasets = list(datasets)
        offered = [(choice.label, choice.path) for choice in datasets
                   if not choice.problem and not training_refusal(self.method, choice.format)]
        note = not_offered_note(datasets, self.method, self.method_label())
        if note != getattr(self, "_note_shown", None):  # each visit lists again: the same note set again lays the form out
            self._note_shown = note
            line = self.query_one("#dataset-note", Static)
            line.update(plain(note))
            line.set_class(not note, "-empty")
        for select, options in zip(selects, (models, offered, offered), strict=False):
            if self._choices.get(select.id) != options:  # the pane reloads its lists on every visit; setting them rebuilds the menu
                self._choices[select.id] = list(options)
                current = select.value
                select.set_options([(plain(label), value) for label, value in options])  # run and file names: never markup
                if current in {value for _, value in options}:
                    select.value = current
            wanted = self._wanted.get(select.id)
            if wanted is not None and wanted in {value for _, value in options}:
                select.value = wanted
                del self._wanted[select.id]

    def fill_from(self, run: dict, keep_name: bool = False) -> list[str]:
        """Fill the form from a run's ``run.json`` (clone a run: the name left automatic) or a recipe (``keep_name``).

        The model and dataset lists may not hold the run's picks yet (they load in a worker):
        those are made when they do. Returns what could not be carried over, for the user.
        """
        self.clear_errors()
        method = str(run.get("method") or "lora")
        self.method = method  # first, so that the Changed event below finds it set and keeps our values
        self.query_one("#field-method", Select).value = method
        self.modes = {name: str(run.get(name) or "lora") for name in self.modes}  # likewise
        values = (TrainConfig().to_dict() | self.method_defaults()
                  | {k: v for k, v in run.items() if v is not None})
        for field in FIELDS:
            widget = self.query_one(f"#field-{field.name}")
            text = "" if field.name == "name" and not keep_name else format_value(values.get(field.name))
            if isinstance(widget, Select):
                if text in {value for _, value in SELECTS.get(field.name, ())}:
                    widget.value = text
            else:
                widget.value = text
        for field in FIELDS:
            if field.name in DEFAULT_KEYS and field.name not in OPTIONAL:
                self.query_one(f"#field-{field.name}", Input).placeholder = self.placeholder(field)
        self.show_method_fields()
        self.keep_extra(run)
        left_out = []
        model = str(run.get("model") or "default")
        models = {value for _, value in self._choices.get("field-model", [])}
        if model in models or not models:
            self._wanted["field-model"] = model
            self.query_one("#field-model_path", Input).value = ""
        else:  # a folder or a Hub id: typed, as the user would
            self.query_one("#field-model_path", Input).value = model
        hub_dataset = str(run.get("dataset") or "")
        self.query_one("#field-dataset_hub", Input).value = hub_dataset if hub_dataset.startswith("hf:") else ""
        for name in ("dataset", "eval_dataset"):
            path = run.get(name)
            self.query_one(f"#field-{name}", Select).clear()
            if name == "dataset" and hub_dataset.startswith("hf:"):
                continue  # in the Hub dataset field
            if path and any(choice.path == str(path) for choice in self._datasets):
                self._wanted[f"field-{name}"] = str(path)
            elif path and self._datasets:
                left_out.append(f"{name.replace('_', ' ')} {path} is not in datasets/")
            elif path:
                self._wanted[f"field-{name}"] = str(path)  # the lists are not loaded yet
        if self._datasets:
            self.set_choices(self._choices.get("field-model", []), self._datasets)
        return left_out

    def keep_extra(self, run: dict) -> None:
        """Keep ``run``'s settings that no field shows (and that differ from the defaults), and list them."""
        defaults = TrainConfig().to_dict() | self.method_defaults()
        shown = {field.name for field in FIELDS} | {"model", "dataset", "eval_dataset", "method", "name"}
        # Never carried from a file: running a model's own code, or past the memory plan, is asked each time.
        never = {"trust_remote_code", "ignore_memory_plan"}
        self.extra = {name: value for name, value in run.items()
                      if name in defaults and name not in shown | never and value is not None and value != defaults[name]}
        line = self.query_one("#extra-settings", Static)
        text = " · ".join(f"{name} {format_value(value)}" for name, value in self.extra.items())
        line.update(plain(f"Also set (no field here): {text}") if text else "")  # from a file: no markup
        line.set_class(not text, "-empty")

    def use_all_gpus(self, count: int) -> None:
        """Start the Processes field at ``count`` when several GPUs are visible and the field still holds its default.

        A value the user typed (anything but the default 1) is left alone.
        """
        field = self.query_one("#field-nproc", Input)
        if count >= 2 and field.value.strip() == self.initial["nproc"]:
            field.value = str(count)

    # -- method ---------------------------------------------------------------------------

    @on(Select.Changed, "#field-method")
    def method_changed(self, event: Select.Changed) -> None:
        if event.value == self.method or event.value == Select.NULL:
            return
        old = self.method_defaults()
        self.method = str(event.value)
        self.replace_defaults(old, self.method_defaults())
        for field in FIELDS:
            if field.name in DEFAULT_KEYS and field.name not in OPTIONAL:
                self.query_one(f"#field-{field.name}", Input).placeholder = self.placeholder(field)
        self.show_meaning("lr")
        self.show_method_fields()
        if self._datasets:  # the lists hold what the new method trains on
            models = self._choices.get("field-model", [])
            self.set_choices(models, self._datasets)

    def method_label(self) -> str:
        """The chosen method as people call it: LoRA, QLoRA, full fine-tuning, freeze, DPO."""
        return METHOD_NAMES.get(self.method, self.method)

    @on(Select.Changed, "#field-dpo_mode")
    @on(Select.Changed, "#field-reward_mode")
    def mode_changed(self, event: Select.Changed) -> None:
        name = event.select.id.removeprefix("field-")
        if not isinstance(event.value, str) or event.value == self.modes.get(name):
            return  # set by fill_from, which keeps the run's own values
        old, self.modes[name] = self.modes.get(name, "lora"), event.value
        # Full DPO or a full reward model wants a learning rate ~50× lower than through LoRA:
        # the lr a user left at the other mode's default follows the mode.
        if name == f"{self.method}_mode":
            self.replace_defaults(method_defaults(self.method, old), self.method_defaults())
        self.show_method_fields()

    def mode(self) -> str:
        """The DPO or reward model's mode picked now (``lora`` or ``full``); ``lora`` for other methods."""
        return self.modes.get(f"{self.method}_mode", "lora")

    def method_defaults(self) -> dict:
        """The defaults of the method (and mode) picked now."""
        return method_defaults(self.method, self.mode())

    def replace_defaults(self, old: dict, new: dict) -> None:
        """Put ``new`` defaults in the fields the user left at the ``old`` ones (or empty), and show the new placeholders."""
        for key in DEFAULT_KEYS:
            field = self.query_one(f"#field-{key}", Input)
            if field.value.strip() in ("", format_value(old.get(key, TrainConfig().to_dict().get(key)))):
                field.value = format_value(new.get(key, TrainConfig().to_dict().get(key)))

    def defaults(self) -> dict:
        """The value each field takes when left empty: the engine's defaults and the method's."""
        return TrainConfig().to_dict() | self.method_defaults()

    def placeholder(self, field: Field) -> str:
        """What an empty field shows in grey: the value it stands for (a description for an optional one)."""
        if field.name in OPTIONAL:
            return field.placeholder
        return format_value(self.defaults().get(field.name))

    def meaning(self, name: str) -> str:
        """What the value of field ``name`` means (``about five evaluations`` for Eval every 0), or ``""``."""
        text = self.value_of(name) if self.is_mounted else self.initial.get(name, "")
        if not text and name not in OPTIONAL:
            text = format_value(self.defaults().get(name))  # empty: the default is used
        return MEANINGS[name](text, format_value(self.defaults().get("lr")))

    def show_meaning(self, name: str) -> None:
        if name in MEANINGS:
            self.query_one(f"#meaning-{name}", Static).update(plain(self.meaning(name)))

    def apply_method_defaults(self) -> None:
        """Put the current method's defaults back into the fields they cover."""
        defaults = TrainConfig().to_dict() | self.method_defaults()
        for key in DEFAULT_KEYS:
            self.query_one(f"#field-{key}", Input).value = format_value(defaults[key])

    def field_applies(self, field: Field) -> bool:
        """Whether ``field`` matters for the method (and DPO mode) chosen now."""
        if field.methods and self.method not in field.methods:
            return False
        return not (field.lora_only and self.method in ("dpo", "reward") and self.mode() != "lora")

    def show_method_fields(self) -> None:
        for field in FIELDS:
            hidden = not self.field_applies(field)
            self._rows[field.name].set_class(hidden, "-hidden")
            if field.name in self._errors:
                self._errors[field.name].set_class(hidden, "-hidden")

    def is_shown(self, name: str) -> bool:
        """Whether the row of field ``name`` is shown (rows of other methods are hidden)."""
        return not self._rows[name].has_class("-hidden")

    # -- values and errors ----------------------------------------------------------------

    def value_of(self, name: str) -> str:
        """The text (or choice) of field ``name``; ``""`` for no choice."""
        widget = self.query_one(f"#field-{name}")
        value = widget.value
        return "" if value == Select.NULL or value is None else str(value).strip()

    def config(self) -> TrainConfig:
        """The form as a config.

        Raises:
            ConfigError: For text that is not a number where one is needed (every such field).
        """
        config, errors = self.config_and_errors()
        if errors:
            raise ConfigError(errors)
        return config

    def config_and_errors(self) -> tuple[TrainConfig, list[tuple[str, str]]]:
        """The form as a config with every unreadable field at its default, and those fields' errors.

        The engine can then check the rest, so a refusal shows every field's problem at once
        (a parse error hid the others').
        """
        values = dict(self.extra) | {
            "model": self.value_of("model_path") or self.value_of("model"),
            "dataset": self.value_of("dataset_hub") or self.value_of("dataset"),
            "eval_dataset": self.value_of("eval_dataset") or None, "method": self.method}
        defaults = self.defaults()
        for field in FIELDS:
            if not self.field_applies(field):
                continue  # a hidden field keeps the engine's default: never refuse what is not shown
            text = self.value_of(field.name)
            if text or field.name in OPTIONAL or field.name == "template":
                values[field.name] = text or None
            else:  # empty: the default its placeholder shows, not a refusal
                values[field.name] = defaults[field.name]
        errors = []
        for name, value in list(values.items()):
            try:
                TrainConfig.from_dict({name: value})
            except ConfigError as error:
                errors += error.errors
                values[name] = defaults.get(name)
        return TrainConfig.from_dict(values), errors

    def _error_line(self, name: str) -> Static:
        """The error line under field ``name``, made (empty) the first time it is asked for."""
        line = self._errors.get(name)
        if line is None:
            line = self._errors[name] = Static("", id=f"error-{name}", classes="field-error -empty")
            self.mount(line, after=self._rows[name])
        return line

    def clear_errors(self) -> None:
        for error in self._errors.values():
            error.update("")
            error.add_class("-empty")
        self.query_one("#form-errors", Static).update("")
        self.query_one("#form-errors").add_class("-empty")

    def show_errors(self, errors: list[tuple[str, str]]) -> None:
        """Show each ``(field, message)`` under its field (the rest at the top); focus the first."""
        self.clear_errors()
        by_field: dict[str, list[str]] = {}
        for name, message in errors:
            if name == "model" and self.value_of("model_path"):
                name = "model_path"  # the folder typed is what the message is about
            if name == "dataset" and self.value_of("dataset_hub"):
                name = "dataset_hub"
            by_field.setdefault(name, []).append(message)
        general = []
        for name, messages in by_field.items():
            if name not in self._rows or not self.is_shown(name):
                general += [f"{name}: {m}" for m in messages]
                continue
            line = self._error_line(name)
            line.update(plain("\n".join(messages)))
            line.remove_class("-empty")
        # The focus goes to the highest field in error, whatever order the errors came in.
        first = next((name for name in self._rows if name in by_field and self.is_shown(name)), None)
        if general:
            self.query_one("#form-errors", Static).update(plain("\n".join(general)))
            self.query_one("#form-errors").remove_class("-empty")
        if first:
            widget = self.query_one(f"#field-{first}")
            widget.focus()
            self.scroll_to_widget(self._rows[first], animate=False)
        elif general:
            self.scroll_home(animate=False)

    def errors_shown(self) -> dict[str, str]:
        """The errors on screen, by field (``""`` for the general ones); for tests and the status line."""
        shown = {name: str(line.render()) for name, line in self._errors.items() if not line.has_class("-empty")}
        general = self.query_one("#form-errors", Static)
        if not general.has_class("-empty"):
            shown[""] = str(general.render())
        return shown

    @on(Input.Changed)
    def clear_field_error(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("field-")
        line = self._errors.get(name)
        if line is not None:
            line.add_class("-empty")
        self.show_meaning(name)

    def show_plan(self, summary: str, fits: bool = True, shape: str = "") -> None:
        """Show what the run will do (``shape``: examples, steps, time) and the memory plan above
        the Start button; the plan in red when the run will not fit."""
        plan = summary if fits or not summary else f"{summary}: will not fit"
        if (shape, plan, fits) == getattr(self, "_plan_shown", None):
            return  # every visit plans again; the same line set again would lay the form out again
        self._plan_shown = (shape, plan, fits)
        self.query_one("#run-shape", Static).update(plain(shape))
        line = self.query_one("#memory-plan", Static)
        line.update(plain(plan))
        line.set_class(not fits, "-over")

    def set_status(self, text: str, style: str = "") -> None:
        """Show what the launch is doing beside the Start button."""
        self.query_one("#launch-status", Static).update(plain(text, style=style))
