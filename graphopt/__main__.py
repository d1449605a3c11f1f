"""``python -m graphopt`` is the ``graphopt`` command."""

import sys

from .cli import main

sys.exit(main())
