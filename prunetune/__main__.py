"""``python -m prunetune``: the same command line as the ``prunetune`` script."""

from __future__ import annotations

import sys

from prunetune.search.cli import main

if __name__ == "__main__":
    sys.exit(main())
