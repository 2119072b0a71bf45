"""`python -m aibot`: the `aibot` command (see aibot/cli.py)."""

import sys

from aibot.cli import main

sys.exit(main())
