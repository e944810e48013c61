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
