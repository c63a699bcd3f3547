"""``python -m cryomine_core`` runs the ``cryomine`` command line."""

import sys

from cryomine_core.cli import main

sys.exit(main())
