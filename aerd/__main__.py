"""``python -m aerd`` = the ``aerd`` command."""

import sys

from .cli import main

sys.exit(main())
