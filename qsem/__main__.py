"""``python -m qsem`` runs the command line (same as the ``qsem`` script)."""

import sys

from qsem.cli import main

sys.exit(main())
