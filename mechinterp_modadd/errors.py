"""Exceptions of the project.

Every error a user can trigger with bad input is one of these, with a message that names the
file, the key, what was expected and what was found.
"""

from __future__ import annotations


class ModAddError(Exception):
    """Base class of every error raised on purpose by mechinterp_modadd."""


class ConfigError(ModAddError, ValueError):
    """An invalid configuration value (model, training or analysis)."""


class InputError(ModAddError, ValueError):
    """Input tensors of the wrong shape, dtype or range (e.g. tokens outside [0, p))."""


class CheckpointError(ModAddError):
    """A checkpoint file or run folder that cannot be read or does not match what was asked."""


class RunFolderError(CheckpointError, ConfigError):
    """A run folder that may not be written or resumed as asked (not empty, locked, damaged)."""


class ModAddWarning(UserWarning):
    """A warning about a setting the toolkit accepts but whose results need care (e.g. composite p)."""


class OutputError(ModAddError, OSError):
    """An output file or folder that cannot be written (missing parent, a folder in the way, no
    permission, disk full); names the path and, on the command line, the option."""
