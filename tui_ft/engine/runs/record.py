"""A run's ``run.json`` as one typed record: the :class:`TrainConfig` and what ``create_run`` resolved beside it.

``run.json`` holds the config's fields (``name``, ``template``, ``dataset`` and ``eval_dataset``
as ``create_run`` resolved them) and, beside them, the base model's folder (``model_path``), a
base adapter (a LoRA run trained on), the Hub commit (``model_revision``), the creation time and
the package versions. :class:`RunRecord` reads and writes that file; whoever trains or loads a
run's model takes a record, never the raw dict. The format on disk is unchanged: a record read
and written again gives back every key ``create_run`` wrote, with its value.

No torch here: the dashboard imports :mod:`tui_ft.engine.runs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tui_ft.engine.runs.config import ConfigError, TrainConfig
from tui_ft.engine.workspace import RUN_FILE


@dataclass(frozen=True)
class RunRecord:
    """Everything ``run.json`` records, typed.

    Attributes:
        config: The config the run trains with (as recorded; :meth:`TrainConfig.resolved` fills in
            the method defaults). A run from before ``weight_dtype`` existed reads ``float32``.
        name: The run's name (``None`` only in a hand-written ``run.json`` that names none).
        model_path: The base model's folder, resolved when the run was created.
        template: The prompt template fixed at creation (``None`` only in a hand-written
            ``run.json`` that names none: evaluation then takes the model's own).
        base_adapter: The adapter merged into the base first (a LoRA run trained on), or ``None``.
        model_revision: The Hub commit of a Hub model (its weights are fetched at exactly it).
        created: When the run was created (``time.time()``).
        versions: Python's and the packages' versions at creation.
        dataset_source: Where ``dataset`` came from when it is a Hub dataset, pinned at the commit
            fetched (``hf:org/name@commit:split``); ``config.dataset`` is the cached file read.
        eval_dataset_source: The same for ``eval_dataset``.
    """

    config: TrainConfig
    name: str | None
    model_path: Path
    template: str | None
    base_adapter: Path | None = None
    model_revision: str | None = None
    created: float | None = None
    versions: dict = field(default_factory=dict)
    dataset_source: str | None = None
    eval_dataset_source: str | None = None

    @classmethod
    def from_json(cls, values: dict) -> RunRecord:
        """The record a ``run.json`` dict holds; keys it does not know are left out.

        Raises:
            ConfigError: A recorded setting cannot be read as its type, or ``model_path`` (or
                ``base_adapter``) is missing or not text.
        """
        config = TrainConfig.from_run(values)
        model_path = values.get("model_path")
        if not isinstance(model_path, str) or not model_path:
            raise ConfigError([("model_path", _missing_text(model_path, "names no base model folder"))])
        base_adapter = values.get("base_adapter")
        if base_adapter is not None and not isinstance(base_adapter, str):
            raise ConfigError([("base_adapter", _missing_text(base_adapter, ""))])
        revision, created, versions = values.get("model_revision"), values.get("created"), values.get("versions")
        return cls(
            config=config,
            name=config.name,
            model_path=Path(model_path),
            template=config.template,
            base_adapter=Path(base_adapter) if base_adapter else None,
            model_revision=revision if isinstance(revision, str) else None,
            created=created if isinstance(created, (int, float)) and not isinstance(created, bool) else None,
            versions=versions if isinstance(versions, dict) else {},
            dataset_source=_text_or_none(values.get("dataset_source")),
            eval_dataset_source=_text_or_none(values.get("eval_dataset_source")),
        )

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        """The record in ``run_dir/run.json``.

        Raises:
            ModelError: The file cannot be read, is not a JSON object, or is not a run's record
                (one line naming the file and what is wrong).
        """
        from tui_ft.engine.models import ModelError
        from tui_ft.engine.models.references import read_run_json

        values = read_run_json(run_dir)
        try:
            return cls.from_json(values)
        except ConfigError as error:
            raise ModelError(f"{Path(run_dir) / RUN_FILE}: {error}") from None

    def to_json(self) -> dict:
        """The ``run.json`` dict, as ``create_run`` writes it (the inverse of :meth:`from_json`)."""
        return self.config.to_dict() | {
            "name": self.name,
            "template": self.template,
            "model_path": str(self.model_path),
            "base_adapter": str(self.base_adapter) if self.base_adapter else None,
            "model_revision": self.model_revision,
            "created": self.created,
            "versions": self.versions,
        } | {  # only where the Hub gave a dataset: every other run.json stays as it was
            key: value for key, value in (("dataset_source", self.dataset_source),
                                          ("eval_dataset_source", self.eval_dataset_source)) if value
        }


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _missing_text(value, missing: str) -> str:
    if value is None or value == "":
        return missing
    return f"must be a folder path (text), got {type(value).__name__}"
