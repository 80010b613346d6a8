"""``python -m tui_ft``: the same as the ``tui-ft`` command."""

import sys

from tui_ft.cli import main

sys.exit(main())
