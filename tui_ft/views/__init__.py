"""What the dashboard shows, computed without Textual: table rows, plot series, formatted numbers.

The Runs pane and the Benchmark pane draw from these; the CLI formats with them too. Nothing
here imports textual or torch, so each piece is tested headless.
"""
