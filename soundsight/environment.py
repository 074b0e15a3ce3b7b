"""The ``SOUNDSIGHT_*`` environment variables that are not settings, each declared beside its reader.

Settings come from ``SOUNDSIGHT_<GROUP>__<FIELD>`` (`soundsight.settings`). A few other variables
configure what lies outside a render's settings (the web server the UI's links point at, where
text embeddings are kept, the deployments' defaults). Each is declared in the module that reads
it, and read through its declaration:

    MEDIA_URL = environment_variable("SOUNDSIGHT_MEDIA_URL", "a web server's URL for the runs folder")
    ...
    base = MEDIA_URL.get()

`declared_variables` finds every declaration in soundsight's own source files, without importing
the modules that make them (some load model stacks), so the warning about ``SOUNDSIGHT_*``
variables that mean nothing (`soundsight.settings.unknown_environment_variables`) knows them all.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PREFIX = "SOUNDSIGHT_"
# soundsight's packages: the core and the rooms installed beside it (pyproject.toml's package-dir).
PACKAGES = ("soundsight", "soundsight.flows", "soundsight.tasks", "soundsight.models", "soundsight.deployments")


@dataclass(frozen=True)
class EnvironmentVariable:
    """One ``SOUNDSIGHT_*`` variable that is not a setting.

    Attributes
    ----------
    name : str
        The variable, ``SOUNDSIGHT_...``.
    meaning : str
        What it sets, for readers of the code that declares it.
    """

    name: str
    meaning: str

    def get(self, default: str = "") -> str:
        """The variable's value in this process's environment, or `default` when it is unset."""
        return os.environ.get(self.name, default)


def environment_variable(name: str, meaning: str) -> EnvironmentVariable:
    """Declare a ``SOUNDSIGHT_*`` variable that is not a setting, beside the code that reads it.

    Call it at module level with the name as a string literal: `declared_variables` reads these
    calls from the source.

    Raises
    ------
    ValueError
        `name` lacks the ``SOUNDSIGHT_`` prefix or has a setting's ``__`` separator.
    """
    if not name.startswith(PREFIX) or "__" in name:
        raise ValueError(f"{name!r}: a soundsight variable is SOUNDSIGHT_<NAME>, without a setting's '__'")
    return EnvironmentVariable(name, meaning)


def _source_files() -> list[Path]:
    files: list[Path] = []
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            # The core's own files only: the rooms are listed in PACKAGES, wherever they are installed.
            found = Path(folder).glob("*.py") if package == "soundsight" else Path(folder).rglob("*.py")
            files += [p for p in found if "__pycache__" not in p.parts]
    return sorted(set(files))


# A declaration as `environment_variable` asks for it: the name as the first argument's string literal.
# Read with a pattern, not `ast`: CPython 3.11's AST constructor keeps its recursion depth in state
# shared by all threads, and parsing beside another thread that builds ASTs (a flow run's engine)
# failed a deployment run with "SystemError: AST constructor recursion depth mismatch".
DECLARATION = re.compile(r"""\benvironment_variable\(\s*["'](SOUNDSIGHT_\w+)["']""")


@cache
def declared_variables() -> frozenset[str]:
    """The names every ``environment_variable("SOUNDSIGHT_...", ...)`` call in soundsight's source declares."""
    names = set()
    for path in _source_files():
        names.update(DECLARATION.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)
