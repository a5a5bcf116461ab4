"""`python -m foresail` runs the `foresail` command."""

import sys

from foresail.cli import main

sys.exit(main())
