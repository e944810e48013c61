"""The registry of ``modadd`` sub-commands: :data:`COMMANDS` and the :func:`command` decorator.

It lives apart from :mod:`mechinterp_modadd.cli` so that command modules import it, the
``commands`` package imports the command modules, and the CLI imports the package: every import
points one way (no module imports the CLI back). Standard library only, so that building the
parser stays light.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["COMMANDS", "command"]

#: name -> (configure(parser), run(args) -> exit code, one-line help), in registration order
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str):
    """Register ``configure(parser)`` / ``run(args)`` for the sub-command ``name``::

        @command("name", "one-line help")(configure)
        def run(args): ...
    """

    def deco(configure: Callable[[argparse.ArgumentParser], None]):
        def with_run(run: Callable[[argparse.Namespace], int]):
            COMMANDS[name] = (configure, run, help)
            return run

        return with_run

    return deco
