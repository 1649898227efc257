"""``python -m tenantml.cli``: the ``tenantml`` command."""

import sys

from tenantml.cli import main

sys.exit(main())
