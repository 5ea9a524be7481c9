"""``python -m mullama.cli``: the ``mullama`` command."""

import sys

from mullama.cli.main import main

sys.exit(main())
