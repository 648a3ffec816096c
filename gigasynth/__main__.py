"""`python -m gigasynth` runs the command line."""

import sys

from gigasynth.cli import main

sys.exit(main())
