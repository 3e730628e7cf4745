"""``python samples/inbreast/inbreast.py <command>`` from a checkout, without installing: the same
command line as the installed ``inbreast`` console script (``ftmtl.cli``)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's packages
    from ftmtl.cli import main

    sys.exit(main())
