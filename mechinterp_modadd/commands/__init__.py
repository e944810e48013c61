"""Sub-commands of the ``modadd`` CLI, one module each (see ``cli.COMMAND_MODULES``)."""
