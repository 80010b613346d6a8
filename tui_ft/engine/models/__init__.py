"""Models: references (``default``, a folder, a cached model, a Hub id, a run), loading, and the devices to run on.

- :mod:`.references` resolves and lists model references;
- :mod:`.default_model` converts the default model (SmolLM2-135M-Instruct) from its GGUF once;
- :mod:`.model_folder` says what a model or run folder holds and whether it is safe to load;
- :mod:`.loading` loads a resolved reference's tokenizer, weights and LoRA adapter;
- :mod:`.hub` downloads a Hub id ``org/name[@revision]`` into the Hugging Face cache
  (safetensors only, resumable, its progress shown by whoever asks);
- :mod:`.devices` counts GPUs without torch and picks the device a model runs on.

Importing this package loads neither torch nor transformers.
"""

from tui_ft.engine.models.default_model import DEFAULT_REF, ensure_default_model, gguf_path
from tui_ft.engine.models.hub import DownloadStopped, download_message, showing_downloads
from tui_ft.engine.models.loading import load_model, load_tokenizer
from tui_ft.engine.models.model_folder import (
    ModelError,
    check_adapter,
    is_model_folder,
    model_code_problem,
    remote_code_problem,
    weight_names,
)
from tui_ft.engine.models.references import (
    ModelRef,
    fetch_run_weights,
    list_models,
    list_reward_models,
    pinned_model,
    resolve_model,
)

__all__ = [
    "DEFAULT_REF", "DownloadStopped", "ModelError", "ModelRef", "check_adapter", "download_message", "ensure_default_model",
    "fetch_run_weights", "gguf_path", "is_model_folder", "showing_downloads",
    "list_models", "list_reward_models", "load_model", "load_tokenizer", "model_code_problem", "pinned_model", "remote_code_problem",
    "resolve_model", "weight_names",
]
