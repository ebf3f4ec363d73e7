"""`python -m faice` = the `faice` command."""

import sys

from faice.cli import main

sys.exit(main())
