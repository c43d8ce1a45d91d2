"""`python -m opengenie.training fit --config FILE`: LightningCLI's own entry."""

import sys

from opengenie.training.cli import main

try:
    main()
except (ValueError, FileNotFoundError) as err:  # errors a user can act on: no traceback
    print(f"opengenie.training: error: {err}", file=sys.stderr)
    sys.exit(2)
