"""The registry of ``modadd`` sub-commands: :data:`COMMANDS`, the :func:`command` decorator, and
:func:`write_outputs`, the last step every command shares.

It lives apart from :mod:`mechinterp_modadd.cli` so that command modules import it, the
``commands`` package imports the command modules, and the CLI imports the package: every import
points one way (no module imports the CLI back). Standard library only, so that building the
parser stays light.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

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


def write_outputs(json_path: str | os.PathLike | None, text: str | None,
                  html_path: str | os.PathLike | None, page: Any | None) -> None:
    """The last step of a command (its outputs were checked before the work started, in
    ``cli._check_paths``): write ``text`` to ``json_path`` atomically and save ``page`` (an ``HtmlReport``) to
    ``html_path``, each when given, printing where each went."""
    if text is not None and json_path:
        from ..fileio import atomic_write_text

        atomic_write_text(json_path, text)
        print(f"JSON written to {json_path}")
    if page is not None and html_path:
        page.save(html_path)
        print(f"HTML written to {html_path}")
