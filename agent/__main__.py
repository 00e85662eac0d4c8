"""`python -m agent` is `redflag-agent`."""

import sys

from agent.cli import main

sys.exit(main())
