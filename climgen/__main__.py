"""``python -m climgen``: the same command line as ``climgen`` (see :mod:`climgen.cli`)."""

import sys

from climgen.cli import main

if __name__ == "__main__":
    sys.exit(main())
