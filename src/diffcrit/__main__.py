"""``python -m diffcrit`` is the ``diffcrit`` command."""

import sys

from diffcrit.validation.cli import main

sys.exit(main())
