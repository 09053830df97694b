"""`python -m devkit`: runs the dev kit's command line (devkit.cli)."""

import sys

from devkit.cli import main

sys.exit(main())
