"""``python -m storysync``."""

import sys

from storysync.cli.main import main

sys.exit(main())
