"""``python -m agent_billing.cli``: same as the ``agent-billing`` console script."""

import sys

from agent_billing.cli import main

sys.exit(main())
