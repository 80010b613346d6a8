"""tui_ft: fine-tune language models from a terminal."""

__version__ = "0.1.0"
