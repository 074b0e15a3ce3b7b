"""Backends by name: the tables of `soundsight.backends`, resolved to the objects they name."""

from __future__ import annotations

import importlib
from typing import Any

from soundsight.backends import KINDS


def load(kind: str, name: str) -> Any:
    """The backend object the `kind` table (`soundsight.backends.KINDS`) lists under `name`.

    Raises
    ------
    ValueError
        `name` is not in the table (settings validation makes this a programming error).
    """
    table = KINDS[kind]
    if name not in table:
        raise ValueError(f"no {kind} named {name!r}; one of: {', '.join(table)}")
    module, _, attribute = table[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
