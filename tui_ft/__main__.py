"""``python -m tui_ft``: the same as the ``tui-ft`` command."""

import sys

from tui_ft.cli import main

if __name__ == "__main__":  # not when a spawned child process imports it (the tokenizer's)
    sys.exit(main())
