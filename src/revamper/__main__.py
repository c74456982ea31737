"""``python -m revamper`` runs the ``revamper`` command."""

import sys

from revamper.cli import main

sys.exit(main())
