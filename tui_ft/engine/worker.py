"""``python -m tui_ft.engine.worker RUN_DIR [--trust-remote-code]``: the documented name of a run's worker.

The worker lives in :mod:`tui_ft.engine.runs.worker`; this name stays so that torchrun command
lines (README) and scripts written for it keep working.
"""

import sys

from tui_ft.engine.runs.worker import main

if __name__ == "__main__":
    sys.exit(main())
