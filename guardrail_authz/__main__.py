"""`python -m guardrail_authz` runs the CLI."""

import sys

from guardrail_authz.cli import main

sys.exit(main())
