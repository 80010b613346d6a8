"""Datasets: reading files, detecting their format, rendering examples with a prompt template.

- :mod:`.readers` reads JSONL, JSON, CSV and Parquet into raw records with line numbers;
- :mod:`.formats` detects the format from the keys and turns records into examples, preference
  pairs and benchmark items, with ``path:line`` problems;
- :mod:`.templates` renders an example (alpaca or the tokenizer's chat template) and tokenizes
  it with its loss mask;
- :mod:`.stats` measures token lengths; :mod:`.tokenizer_process` runs a tokenizer in a child
  process so the dashboard never imports transformers.

Importing this package loads neither torch nor transformers (a test checks it).
"""

from tui_ft.engine.data.formats import (
    FORMATS,
    BenchmarkItem,
    Dataset,
    Example,
    PreferencePair,
    PromptItem,
    benchmark_items,
    check_dataset,
    detect_format,
    find_datasets,
    load_dataset,
    preference_examples,
    prompt_items,
    sft_examples,
    trainable_formats,
    training_refusal,
)
from tui_ft.engine.data.readers import DatasetError, Problem

__all__ = [
    "FORMATS", "BenchmarkItem", "Dataset", "DatasetError", "Example", "PreferencePair", "Problem", "PromptItem",
    "benchmark_items", "check_dataset", "detect_format", "find_datasets", "load_dataset", "preference_examples",
    "prompt_items", "sft_examples", "trainable_formats", "training_refusal",
]
