"""`python -m aegir.config explain KEY` (aegir/config/explain.py)."""

import sys

from aegir.config.explain import main

sys.exit(main())
