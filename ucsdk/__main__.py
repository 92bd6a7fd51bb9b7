"""`python -m ucsdk` runs the ucsdk command."""

import sys

from ucsdk.cli import main

sys.exit(main())
