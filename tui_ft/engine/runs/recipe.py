"""Recipes: a run's settings as a YAML file, to train it again or share it.

A recipe is a mapping of :class:`~tui_ft.engine.runs.config.TrainConfig` fields, the names
``--set`` takes (YAML, as Axolotl, LLaMA-Factory and torchtune write theirs)::

    model: default
    dataset: demo_veloria.jsonl
    method: lora
    lr: 0.0002
    lora_targets: [q_proj, v_proj]

``tui-ft train --config FILE`` trains it (flags beside it win), ``tui-ft runs show NAME
--recipe`` writes a run's, and the Train form loads and saves them. Every problem is reported
with the line it is on, and nothing is created: an unknown key (with the closest known one), a
value of the wrong type, a file that is not YAML or not a mapping.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from tui_ft.engine.data.readers import DatasetError, Problem
from tui_ft.engine.files import read_regular
from tui_ft.engine.runs.config import ConfigError, TrainConfig

RECIPES = "recipes"  # <home>/recipes/: where a recipe named without a folder is looked for
SUFFIXES = (".yaml", ".yml")
LEFT_OUT = ("name",)  # a recipe trains a new run: the old run's name is taken
# Running a model's own Python code is the user's choice on the command line, never a file's:
# a recipe is shared and downloaded like a run folder (see models.model_folder.model_code_problem).
NOT_FROM_FILES = ("trust_remote_code",)
MAX_RECIPE_BYTES = 1 << 20
# Other tools' names for our settings (Axolotl, LLaMA-Factory, transformers' TrainingArguments):
# suggested for an unknown key, never read silently, so a recipe means one thing.
OTHER_NAMES = {
    "learning_rate": "lr", "num_epochs": "epochs", "num_train_epochs": "epochs", "micro_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
    "sequence_len": "max_length", "max_seq_length": "max_length", "cutoff_len": "max_length",
    "base_model": "model", "model_name_or_path": "model", "lora_r": "lora_rank", "lora_target_modules": "lora_targets",
    "lora_target": "lora_targets", "datasets": "dataset", "output_dir": "name", "run_name": "name",
    "gradient_checkpointing_enable": "gradient_checkpointing", "dpo_beta": "beta", "pref_beta": "beta",
}


class RecipeError(DatasetError):
    """A recipe that cannot be used: every problem, each ``path:line: message``.

    A :class:`DatasetError` (a file's problems, each at its line): the CLI prints both the same
    way without importing this module, and the runs package with it, on every command.
    """


@dataclasses.dataclass
class Recipe:
    """A recipe's settings as read (values converted to their fields' types), with the line of each."""

    path: Path
    values: dict
    lines: dict[str, int]

    def problems_of(self, error: ConfigError, overridden: set[str] = frozenset()) -> list[Problem]:
        """A config's refusal located: a setting from this recipe at its line, one given on the command line as such."""
        return [Problem(str(self.path), self.lines[name], f"{name}: {message}")
                if name in self.lines and name not in overridden else Problem("command line", 0, f"{name}: {message}")
                for name, message in error.errors]


def find_recipe(name: str | Path, home: Path) -> Path:
    """A recipe path as given (relative to the current folder), else ``<home>/recipes/NAME`` (``.yaml`` optional)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    candidates = [Path(home) / RECIPES / path] + [Path(home) / RECIPES / (str(path) + suffix) for suffix in SUFFIXES]
    for candidate in candidates if not path.is_absolute() else []:
        if candidate.is_file():
            return candidate
    where = f" (nor in {Path(home) / RECIPES})" if not path.is_absolute() else ""
    raise RecipeError([Problem(str(name), 0, f"no such recipe file{where}")])


def read_recipe(path: Path) -> Recipe:
    """Read and check a recipe file.

    Raises:
        RecipeError: Every problem found, each at its line.
    """
    import yaml  # here: every command imports this module (cli.main catches RecipeError)

    path = Path(path)
    try:
        text = read_regular(path, MAX_RECIPE_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError([Problem(str(path), 0, "not UTF-8 text")]) from None
    except OSError as error:
        raise RecipeError([Problem(str(path), 0, f"cannot be read ({getattr(error, 'strerror', None) or error})")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes, which know their lines
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeError([Problem(str(path), mark.line + 1 if mark else 0, f"not valid YAML: {reason}")]) from None
    if root is None:
        raise RecipeError([Problem(str(path), 0, "empty: a recipe is settings, one `key: value` a line")])
    if not isinstance(root, yaml.MappingNode):
        raise RecipeError([Problem(str(path), root.start_mark.line + 1, "a recipe is a mapping of settings "
                                                                         "(`key: value` lines), not a list or a value")])
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    values, lines, problems = {}, {}, []
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or not key:
            problems.append(Problem(str(path), line, "a setting's name must be text"))
            continue
        key = key.replace("-", "_")
        if key in lines:
            problems.append(Problem(str(path), line, f"{key}: given twice (first on line {lines[key]})"))
            continue
        lines[key] = line
        if key in NOT_FROM_FILES:
            problems.append(Problem(str(path), line, f"{key}: not taken from a recipe (it runs the model's own code): "
                                                     f"give --set {key}=true on the command line"))
            continue
        if key not in fields:
            problems.append(Problem(str(path), line, f"{key}: unknown setting{_suggestion(key, fields)}"))
            continue
        value = _construct(value_node)
        problem = _type_problem(fields[key], value)
        if problem is None:
            try:  # the field's own conversion, as for --set and run.json
                values[key] = getattr(TrainConfig.from_dict({key: value}), key)
            except ConfigError as error:
                problem = error.errors[0][1]
        if problem:
            problems.append(Problem(str(path), line, f"{key}: {problem}"))
    if problems:
        raise RecipeError(problems)
    return Recipe(path, values, lines)


def _suggestion(key: str, fields) -> str:
    """`` (did you mean lr?)`` for a near-miss of a setting's name or of another tool's name for it."""
    close = difflib.get_close_matches(key, list(fields) + list(OTHER_NAMES), n=1)
    return f" (did you mean {OTHER_NAMES.get(close[0], close[0])}?)" if close else ""


def _construct(node):
    """A node's Python value, as ``yaml.safe_load`` would build it."""
    import yaml

    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


KIND_NAMES = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
              "list": "a list of names"}


def _type_problem(field: dataclasses.Field, value) -> str | None:
    """A YAML value of a shape no field of this type takes (a list for a number, a mapping anywhere).

    ``--set`` reads text, so the fields' own conversion is lenient with shapes (``bool([1])``);
    YAML gives typed values, and a recipe saying ``epochs: [3]`` is a mistake to point at.
    """
    kind = str(field.type).split("[")[0].split(" ")[0]
    expected = KIND_NAMES.get(kind, kind)
    if isinstance(value, dict):
        return f"expected {expected}, got a mapping"
    if isinstance(value, list) and kind != "list":
        return f"expected {expected}, got a list"
    if kind == "bool" and not isinstance(value, (bool, str)):
        return f"expected true or false, got {value!r}"
    if kind in ("int", "float") and isinstance(value, bool):
        return f"expected {expected}, got {str(value).lower()}"
    return None


def recipe_values(config: dict, keep_name: bool = False) -> dict:
    """The settings of a config (``run.json``, a form) a recipe keeps: every field set; the name only with ``keep_name``."""
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    left_out = NOT_FROM_FILES + (() if keep_name else LEFT_OUT)
    kept = [name for name in fields if name not in left_out]
    return {name: config[name] for name in kept if config.get(name) is not None}


def recipe_text(config: dict, comment: str = "", keep_name: bool = False) -> str:
    """A recipe file's text for ``config``: a comment, then one ``key: value`` a line in the fields' order.

    ``keep_name``: a form saved with a run name keeps it; a finished run's recipe leaves it out
    (that name is taken, by the run itself).
    """
    import yaml

    header = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
    # Lists of names on one line ([q_proj, v_proj]), as people write them.
    return header + yaml.safe_dump(recipe_values(config, keep_name), sort_keys=False, allow_unicode=True, width=1000,
                                   default_flow_style=None)


def config_from_recipe(recipe: Recipe, overrides: dict | None = None) -> TrainConfig:
    """The config a recipe makes, with ``overrides`` (flags given beside it) winning.

    Raises:
        RecipeError: An override cannot be read as its field's type ("command line").
    """
    overrides = overrides or {}
    try:
        return TrainConfig.from_dict(recipe.values | overrides)
    except ConfigError as error:
        raise RecipeError(recipe.problems_of(error, set(overrides))) from None
