"""``python -m lfr``: the same as the ``lfr`` console script."""

import sys

from lfr.cli import main

sys.exit(main())
