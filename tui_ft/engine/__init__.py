"""The headless core of tui_ft: data, models, training, generation, evaluation.

Nothing here imports textual (a test proves it): the CLI and the dashboard both run on it.
"""
