"""Module-level ``__getattr__`` for names that moved to another module."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable


def moved(module_name: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that serves ``names`` (old name -> ``"new.module:new_name"``).

    Accessing a moved name returns the object from its new home and emits a
    ``DeprecationWarning`` naming the new import path; other names raise AttributeError.
    """

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        target_module, _, target_name = names[name].partition(":")
        target_name = target_name or name
        warnings.warn(
            f"{module_name}.{name} moved to {target_module}.{target_name}; import it from there "
            "(the old path will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target_module), target_name)

    return __getattr__
