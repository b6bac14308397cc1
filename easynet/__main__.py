"""`python -m easynet <command>`."""

import sys

from easynet.cli import main

if __name__ == "__main__":
    sys.exit(main())
