"""Sub-commands of the ``modadd`` CLI, one module each, listed in :data:`COMMAND_MODULES`.

Each module registers its sub-command with :func:`~mechinterp_modadd.commands.registry.command`
when imported; :func:`load` imports them all (the CLI calls it before building its parser). A
command module imports at module level only the standard library, :mod:`.registry`,
:mod:`mechinterp_modadd.errors` and :mod:`mechinterp_modadd.constants` (never the CLI: imports
point one way, cli -> commands -> registry).
"""

from __future__ import annotations

__all__ = ["COMMAND_MODULES", "load"]

#: the command modules, in the order their sub-commands appear in ``modadd --help``
COMMAND_MODULES: list[str] = ["train", "diagnose", "ablate", "track", "report", "explore", "sweep"]


def load() -> None:
    """Import every command module of :data:`COMMAND_MODULES` (each registers its sub-command)."""
    # one statement per module, in COMMAND_MODULES order (the order of ``modadd --help``)
    from . import train  # noqa: I001, F401
    from . import diagnose  # noqa: F401
    from . import ablate  # noqa: F401
    from . import track  # noqa: F401
    from . import report  # noqa: F401
    from . import explore  # noqa: F401
    from . import sweep  # noqa: F401
