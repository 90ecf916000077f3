"""``python -m diffcrit`` is the ``diffcrit`` command."""

import sys

from diffcrit.validation.cli import main

if __name__ == "__main__":
    sys.exit(main())
