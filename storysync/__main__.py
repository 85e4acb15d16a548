"""``python -m storysync``."""

import sys

from storysync.cli import main

sys.exit(main())
