"""Models: references (``default``, a folder, a cached model, a Hub id, a run), loading, and the devices to run on.

- :mod:`.references` resolves and lists model references, converts the default model once,
  and loads tokenizers and weights;
- :mod:`.hub` downloads a Hub id ``org/name[@revision]`` into the Hugging Face cache
  (safetensors only, resumable, its progress shown by whoever asks);
- :mod:`.devices` counts GPUs without torch and picks the device a model runs on.

Importing this package loads neither torch nor transformers.
"""

from tui_ft.engine.models.hub import DownloadStopped, download_message, showing_downloads
from tui_ft.engine.models.references import (
    DEFAULT_REF,
    ModelError,
    ModelRef,
    check_adapter,
    ensure_default_model,
    fetch_run_weights,
    gguf_path,
    is_model_folder,
    list_models,
    load_model,
    load_tokenizer,
    model_code_problem,
    remote_code_problem,
    resolve_model,
    weight_names,
)

__all__ = [
    "DEFAULT_REF", "DownloadStopped", "ModelError", "ModelRef", "check_adapter", "download_message", "ensure_default_model",
    "fetch_run_weights", "gguf_path", "is_model_folder", "showing_downloads",
    "list_models", "load_model", "load_tokenizer", "model_code_problem", "remote_code_problem", "resolve_model", "weight_names",
]
