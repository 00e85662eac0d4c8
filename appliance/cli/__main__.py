"""`python -m appliance.cli` is `redflag-appliance`."""

import sys

from appliance.cli import main

sys.exit(main())
