"""JSON Schemas of every JSON document the package writes, and one helper to stamp and check them.

Every JSON output carries two keys at the top level:

- ``schema``: ``{"name": NAME, "version": N}``, naming the schema file ``NAME.schema.json`` shipped
  in this package (``mechinterp_modadd/schemas/``) and its version. The version grows when a key is
  renamed or removed or its meaning changes; adding an optional key keeps it.
- ``mechinterp_modadd_version``: the version of the package that wrote the document.

A command writes its document with :func:`write_json` (stamp, then an atomic write with strict
JSON: NaN and infinities are refused). :func:`validate` checks a document against its schema
with the ``jsonschema`` package (the ``dev`` extra; the tests validate every real output).

Example::

    from mechinterp_modadd.schemas import stamp, validate, write_json
    doc = stamp({"rows": [...]}, "sweep")        # adds "schema" and "mechinterp_modadd_version"
    validate(doc)                               # raises SchemaError naming the failing key
    write_json("out.json", {"rows": [...]}, "sweep")
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ModAddError

__all__ = ["SchemaError", "schema_names", "load_schema", "schema_version", "stamp", "validate", "write_json"]


class SchemaError(ModAddError, ValueError):
    """A JSON document that does not match its schema, or names no known schema."""


_SUFFIX = ".schema.json"


def schema_names() -> list[str]:
    """Names of the schemas shipped with the package (``NAME.schema.json`` files)."""
    files = resources.files(__package__)
    return sorted(f.name[: -len(_SUFFIX)] for f in files.iterdir() if f.name.endswith(_SUFFIX))


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``NAME.schema.json`` as a dict (cached)."""
    f = resources.files(__package__) / f"{name}{_SUFFIX}"
    if not f.is_file():
        raise SchemaError(f"no JSON schema named {name!r}; shipped: {', '.join(schema_names())}")
    return json.loads(f.read_text(encoding="utf-8"))


def schema_version(name: str) -> int:
    """The version a document of schema ``name`` is stamped with (the schema's ``x-version``)."""
    return int(load_schema(name)["x-version"])


def _package_version() -> str:
    from .. import __version__

    return __version__


def stamp(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``doc`` with ``schema`` = {name, version} and ``mechinterp_modadd_version`` first."""
    head = {"schema": {"name": name, "version": schema_version(name)},
            "mechinterp_modadd_version": _package_version()}
    return {**head, **{k: v for k, v in doc.items() if k not in head}}


def validate(doc: dict[str, Any], name: str | None = None) -> None:
    """Check ``doc`` against its schema (``name``, else the one its ``schema.name`` names).

    Raises :class:`SchemaError` with the path of the first failing key, or a
    :class:`~mechinterp_modadd.errors.ModAddError` naming the extra to install when ``jsonschema``
    is missing.
    """
    try:
        import jsonschema
    except ImportError:
        raise ModAddError("validating JSON needs the jsonschema package: pip install "
                          "'mechinterp_modadd[dev]'") from None
    if name is None:
        name = (doc.get("schema") or {}).get("name") if isinstance(doc, dict) else None
        if not isinstance(name, str):
            raise SchemaError("the document has no schema.name; pass the schema name")
    validator_cls = jsonschema.validators.validator_for(load_schema(name))
    errors = sorted(validator_cls(load_schema(name)).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SchemaError(f"JSON document does not match {name}{_SUFFIX} at {where}: {e.message}{more}")


def write_json(path: str | os.PathLike, doc: dict[str, Any], name: str, indent: int | None = 1) -> Path:
    """Stamp ``doc`` with schema ``name`` and write it atomically as strict JSON; returns the path."""
    from ..fileio import atomic_write_text

    text = json.dumps(stamp(doc, name), indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")
