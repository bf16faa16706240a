"""``python -m mirror_providers``: the command line (see ``mirror_providers.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
