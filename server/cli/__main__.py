"""`python -m server.cli`, the same as the installed `livechat` script."""

import sys

from server.cli import main

sys.exit(main())
