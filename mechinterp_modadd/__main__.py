"""``python -m mechinterp_modadd``: the same as the ``modadd`` command."""

import sys

from mechinterp_modadd.cli import main

sys.exit(main())
