"""``python -m siblings``: the same as the ``siblings`` command."""

import sys

from siblings.cli import main

sys.exit(main())
