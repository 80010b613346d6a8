"""The Train pane: a form that checks a run with the engine and starts it as a detached worker.

Checking reads the dataset and the tokenizer, and creating the run may convert the default
model, so both happen in a thread worker; the run itself is a separate OS process
(``engine.runs.launch_run``) that outlives the dashboard. Once started, the pane switches to
Runs with the new run selected.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Input, Select, Static
from textual.worker import Worker, get_current_worker

from tui_ft.engine.runs.config import ConfigError, TrainConfig
from tui_ft.ui import keys
from tui_ft.ui.screens.pane import Pane
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.pane_tabs import PaneTabs
from tui_ft.ui.widgets.recipe_dialog import RecipeDialog
from tui_ft.ui.widgets.train_form import DatasetChoice, TrainForm

MODEL_KIND_LABELS = {"default": "", "hf-cache": " (cached)", "run": " (run)", "folder": " (folder)"}


def model_choices(home: Path) -> list[tuple[str, str]]:
    """``(label, reference)`` for every model the engine lists, and model folders under ``home/models``."""
    from tui_ft.engine.models import is_model_folder, list_models

    choices = [(f"{m['ref']}{MODEL_KIND_LABELS.get(m['kind'], '')}", m["ref"]) for m in list_models(home)]
    folders = home / "models"
    for folder in sorted(folders.iterdir()) if folders.is_dir() else []:
        if is_model_folder(folder):
            choices.append((f"models/{folder.name} (folder)", str(folder)))
    return choices


def dataset_choices(home: Path) -> list[DatasetChoice]:
    """Every dataset file under ``home/datasets``, read and checked as the Datasets pane reads it."""
    from tui_ft.engine.data import find_datasets, load_dataset
    from tui_ft.engine.data.readers import DatasetError

    root = home / "datasets"
    choices = []
    for path in find_datasets(root):
        try:
            dataset = load_dataset(path, strict=False)
            problem = str(dataset.problems[0]) if dataset.problems else ""
            choice = DatasetChoice(str(path.relative_to(root)), str(path), dataset.format, len(dataset), problem)
        except DatasetError as error:
            choice = DatasetChoice(str(path.relative_to(root)), str(path), "unknown", 0, str(error.problems[0]))
        choices.append(choice)
    return choices


class TrainScreen(Pane):
    """Start a fine-tuning run."""

    BINDINGS = keys.TRAIN_BINDINGS
    AUTO_FOCUS = ""  # no field on arrival: digits switch panes until tab enters the form

    launching: reactive[bool] = reactive(False)
    """A run is being checked and started (the Start key is off meanwhile)."""

    _plans_asked = 0  # memory plans asked for so far: only the latest one's answer is shown

    class ChoicesLoaded(Message):
        """The lists of models and datasets were read."""

        def __init__(self, models: list[tuple[str, str]], datasets: list[DatasetChoice]):
            super().__init__()
            self.models, self.datasets = models, datasets

    class GpusCounted(Message):
        """The CUDA GPUs visible to a run started from here were counted."""

        def __init__(self, count: int):
            super().__init__()
            self.count = count

    class RunRefused(Message):
        """The engine refused the config: ``(field, message)`` pairs; nothing was created."""

        def __init__(self, errors: list[tuple[str, str]]):
            super().__init__()
            self.errors = errors

    class MemoryRefused(Message):
        """The memory plan says the run will not fit: one line with the cheapest fix; nothing was created."""

        def __init__(self, line: str):
            super().__init__()
            self.line = line

    class PlanComputed(Message):
        """The memory plan of the form's current settings: its one line, and whether it fits."""

        def __init__(self, summary: str, fits: bool, number: int = 0, shape: str = ""):
            super().__init__()
            self.summary, self.fits, self.number, self.shape = summary, fits, number, shape

    class RunLaunched(Message):
        """A run folder was created and its worker started."""

        def __init__(self, name: str, pid: int):
            super().__init__()
            self.name, self.pid = name, pid

    def compose(self) -> ComposeResult:
        yield PaneTabs("train")
        yield Static("New run  (tab: next field · ctrl+s: start)", classes="pane-title")
        yield TrainForm(id="form")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load_choices()
        self.count_gpus()  # once: GPUs do not come and go while the dashboard is open

    def on_screen_resume(self) -> None:
        self.load_choices()  # runs that finished meanwhile become models to train on

    @property
    def form(self) -> TrainForm:
        return self.query_one(TrainForm)

    # -- workers -------------------------------------------------------------------------

    @work(thread=True, group="train-choices", exclusive=True, exit_on_error=False, description="Listing models and datasets")
    def load_choices(self) -> None:
        home = Path(self.app.home)
        choices = self.ChoicesLoaded(model_choices(home), dataset_choices(home))
        if not get_current_worker().is_cancelled:
            self.post_message(choices)

    @work(thread=True, group="train-gpus", exclusive=True, exit_on_error=False, description="Counting GPUs")
    def count_gpus(self) -> None:
        from tui_ft.engine.models.devices import visible_gpu_count

        count = visible_gpu_count()  # may run nvidia-smi: never on the UI thread
        if not get_current_worker().is_cancelled:
            self.post_message(self.GpusCounted(count))

    @work(thread=True, group="train-launch", exclusive=True, exit_on_error=False, description="Checking and starting the run")
    def launch(self, config: TrainConfig, form_errors: tuple[tuple[str, str], ...] = ()) -> None:
        from tui_ft.engine.models import showing_downloads
        from tui_ft.engine.runs import MemoryPlanError, create_run, launch_run, validate_config

        home = Path(self.app.home)
        # A Hub id's config and tokenizer are fetched here (its weights by the run's worker): say so.
        with showing_downloads(self._download_status):
            # The form's unreadable fields stood at their defaults here: their own errors replace the engine's.
            unread = {name for name, _ in form_errors}
            errors = [*form_errors, *((name, message) for name, message in validate_config(config, home) if name not in unread)]
        if get_current_worker().is_cancelled:
            return  # the app is closing: create nothing
        if errors:
            self.post_message(self.RunRefused(errors))
            return
        try:
            with showing_downloads(self._download_status):
                run_dir = create_run(config, home)
        except ConfigError as error:
            self.post_message(self.RunRefused(error.errors))
            return
        except MemoryPlanError as error:  # the CLI's refusal, word for word
            self.post_message(self.MemoryRefused(str(error)))
            return
        except Exception as error:  # noqa: BLE001 - e.g. a model that fails to convert: show it, never crash
            self.post_message(self.RunRefused([("", f"{type(error).__name__}: {error}")]))
            return
        # Past this point the run exists: start it even if the app is closing, so it never stays queued.
        # Trust in the model's own code comes from this form, for this launch (never from run.json).
        trusted = config.trust_remote_code
        self.post_message(self.RunLaunched(run_dir.name, launch_run(run_dir, trust_remote_code=True) if trusted
                                           else launch_run(run_dir)))

    # Not exclusive: cancelling a worker fails whoever waits on the app's workers (tests, quitting);
    # a plan takes milliseconds, and a stale answer is dropped by its number (show_plan).
    @work(thread=True, group="train-plan", exit_on_error=False, description="Planning memory")
    def plan_memory(self, config: TrainConfig, number: int = 0) -> None:
        """The run's shape and memory plan for ``config``: reads the dataset and config.json only
        (nothing converted, nothing downloaded, no tokenizer)."""
        from tui_ft.engine.data.readers import DatasetError
        from tui_ft.engine.models import ModelError, resolve_model
        from tui_ft.engine.runs.config_checks import find_dataset
        from tui_ft.engine.runs.memory_plan import MemoryPlanError, longest_example_estimate, plan_memory
        from tui_ft.engine.runs.run_shape import run_shape
        from tui_ft.views.run_summary import shape_line

        home = Path(self.app.home)
        shape = None
        try:
            if config.dataset:
                # download=False: a Hub dataset not fetched yet has no shape until the run starts.
                eval_path = find_dataset(config.eval_dataset, home, download=False) if config.eval_dataset else None
                shape = run_shape(config, find_dataset(config.dataset, home, download=False), eval_path, home)
        except (DatasetError, OSError, ValueError):
            shape = None  # a file that does not read: the check at launch says why
        try:
            model = resolve_model(config.model, home, convert=False, weights=False, offline=True)
            # Without a tokenizer (none is loaded in the dashboard): the longest example estimated.
            try:
                longest = longest_example_estimate(find_dataset(config.dataset, home, download=False))
            except (DatasetError, OSError, ValueError):
                longest = None  # no dataset yet, or a Hub one not fetched: planned at max_length
            plan = plan_memory(config, model.path, longest=longest)
        except (ModelError, MemoryPlanError, DatasetError, OSError, ValueError):
            plan = None  # a model not on disk yet, or not one the plan reads: no line
        if not get_current_worker().is_cancelled:
            self.post_message(self.PlanComputed(plan.summary() if plan else "", plan.fits if plan else True, number,
                                                shape_line(shape) if shape else ""))

    def replan(self) -> None:
        """Plan again for the form as it is; a form that does not read as a config shows no plan."""
        self._plans_asked += 1
        try:
            config = self.form.config()
        except ConfigError:
            self.form.show_plan("")
            return
        self.plan_memory(config, self._plans_asked)

    @contextmanager
    def _download_status(self, what: str):
        """A download display for the launch thread: the Start button's status line says what comes, in bytes."""
        from tui_ft.engine.models import download_message

        self.app.call_from_thread(self.form.set_status, f"{what}…")
        yield lambda done, total: self.app.call_from_thread(self.form.set_status, download_message(what, done, total))

    # -- events --------------------------------------------------------------------------

    @on(ChoicesLoaded)
    def show_choices(self, message: ChoicesLoaded) -> None:
        self.form.set_choices(message.models, message.datasets)
        self.replan()

    @on(Input.Changed, "TrainForm Input")
    @on(Select.Changed, "TrainForm Select")
    def fields_changed(self) -> None:
        self.replan()

    @on(PlanComputed)
    def show_plan(self, message: PlanComputed) -> None:
        if message.number == self._plans_asked:  # an answer to an older form is stale
            self.form.show_plan(message.summary, message.fits, message.shape)

    @on(GpusCounted)
    def default_to_all_gpus(self, message: GpusCounted) -> None:
        self.form.use_all_gpus(message.count)

    @on(RunRefused)
    def show_refusal(self, message: RunRefused) -> None:
        self.launching = False
        self.form.show_errors(message.errors)
        self.form.set_status(f"Not started: {len(message.errors)} problem(s) shown in red.", "red")

    @on(MemoryRefused)
    def show_memory_refusal(self, message: MemoryRefused) -> None:
        self.launching = False
        self.form.set_status("Not started: it will not fit in memory.", "red")
        self.notify(message.line, severity="error", timeout=20)

    @on(RunLaunched)
    async def show_launched(self, message: RunLaunched) -> None:
        from tui_ft.ui.screens.runs import RunsScreen

        self.launching = False
        self.form.set_status(f"Started {message.name} (worker pid {message.pid}).", "green")
        self.form.query_one("#field-name").value = ""  # the next run needs a new name
        self.notify(f"Started {message.name}; it keeps running if you close the dashboard.")
        await self.app.switch_mode("runs")
        if isinstance(self.app.screen, RunsScreen):
            self.app.screen.select_run(message.name)

    def worker_failed(self, worker: Worker) -> None:
        if worker.group == "train-launch":
            self.launching = False
            self.form.set_status("Not started: an error occurred.", "red")

    @on(Button.Pressed, "#start")
    def start_pressed(self) -> None:
        self.action_start_run()

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_run" and self.launching:
            return None  # dimmed while a launch is under way
        return True

    def watch_launching(self, launching: bool) -> None:
        self.query_one("#start", Button).disabled = launching
        self.refresh_bindings()

    def action_start_run(self) -> None:
        """Check the form, then create and launch the run in a thread worker."""
        if self.launching:
            return
        form = self.form
        form.clear_errors()
        # A field that cannot be read does not stop the check: every field's problem shows at once.
        config, errors = form.config_and_errors()
        self.launching = True
        form.set_status("Checking the model and the dataset, then starting the worker…")
        self.launch(config, tuple(errors))

    def action_reload_choices(self) -> None:
        self.load_choices()
        self.notify("Reading models and datasets again.", timeout=2)

    # -- recipes ---------------------------------------------------------------------------

    def recipe_path(self, text: str) -> Path:
        """A typed recipe path: relative to the workspace, or a name in its ``recipes/``."""
        from tui_ft.engine.runs.recipe import RecipeError, find_recipe

        home = Path(self.app.home)
        path = Path(text).expanduser()
        path = path if path.is_absolute() else home / path
        if path.is_file():
            return path
        try:
            return find_recipe(text, home)
        except RecipeError:
            return path

    def known_recipes(self) -> list[str]:
        from tui_ft.engine.runs.recipe import RECIPES, SUFFIXES

        folder = Path(self.app.home) / RECIPES
        names = sorted(p.name for p in folder.iterdir() if p.suffix in SUFFIXES) if folder.is_dir() else []
        # Completed from the folder or from the name alone (a name in recipes/ is found either way).
        return [f"{RECIPES}/{name}" for name in names] + names

    def action_load_recipe(self) -> None:
        from tui_ft.engine.runs.recipe import RecipeError, read_recipe

        def check(text: str) -> str:
            path = self.recipe_path(text)
            if not path.exists():
                return f"No such recipe: {text} (looked in {self.app.home} and its recipes/)"
            try:
                read_recipe(path)
            except RecipeError as error:
                return "\n".join(str(problem) for problem in error.problems)
            return ""

        def load(text: str | None) -> None:
            if text:
                self.load_recipe(self.recipe_path(text))

        self.app.push_screen(RecipeDialog("Load a recipe into the form (YAML; recipes/ holds the shipped ones):", "Load",
                                          "recipes/", self.known_recipes(), check), load)

    def load_recipe(self, path: Path) -> None:
        """Fill the form from the recipe at ``path`` (checked by the dialog); its datasets found as ``train`` finds them."""
        from tui_ft.engine.runs.config_checks import find_dataset
        from tui_ft.engine.runs.recipe import read_recipe

        values = dict(read_recipe(path).values)
        for key in ("dataset", "eval_dataset"):
            if values.get(key) and not str(values[key]).startswith("hf:"):  # a Hub dataset stays a reference
                values[key] = str(find_dataset(values[key], Path(self.app.home)).resolve())
        left_out = self.form.fill_from(values, keep_name=True)
        note = f"; {'; '.join(left_out)}" if left_out else ""
        self.notify(f"The form holds the settings of {path.name}: ctrl+s starts the run{note}.", timeout=6)

    def action_save_recipe(self) -> None:
        from tui_ft.engine.runs.recipe import SUFFIXES

        config, errors = self.form.config_and_errors()
        if errors:
            self.form.show_errors(errors)
            self.notify("Not saved: fix the fields marked in red first.", severity="warning")
            return
        home = Path(self.app.home)
        stem = config.name or f"{config.method}-{Path(config.dataset).stem or 'run'}"

        def check(text: str) -> str:
            path = self.recipe_path(text)
            if path.suffix not in SUFFIXES:
                return "A recipe file ends in .yaml."
            if path.exists():
                return f"{path} already exists: choose another name."
            return ""

        def save(text: str | None) -> None:
            if text:
                self.save_recipe(config, self.recipe_path(text), home)

        self.app.push_screen(RecipeDialog("Save the form as a recipe (tui-ft train --config FILE trains it):", "Save",
                                          f"recipes/{stem}.yaml", [], check), save)

    def save_recipe(self, config: TrainConfig, path: Path, home: Path) -> None:
        from tui_ft.engine.files import write_bytes_atomic
        from tui_ft.engine.runs.recipe import recipe_text

        values = config.to_dict()
        datasets = (home / "datasets").resolve()
        for key in ("dataset", "eval_dataset"):  # a file of datasets/ by its name: the recipe works in any workspace
            if values.get(key) and Path(values[key]).resolve().parent == datasets:
                values[key] = Path(values[key]).name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, recipe_text(values, "tui-ft recipe, saved from the Train form: "
                                                         "tui-ft train --config FILE trains it", keep_name=True).encode())
        except OSError as error:
            self.notify(f"{path}: not saved ({error.strerror or error})", severity="error")
            return
        self.notify(f"Saved {path}", timeout=4)

    def action_method_defaults(self) -> None:
        self.form.apply_method_defaults()
