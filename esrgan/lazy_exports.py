"""Package attributes imported on first use (PEP 562), so a package's light parts load without torch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, sources: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A ``__getattr__`` and a ``__dir__`` for ``package``: each name in ``sources`` (name -> module)
    is imported from its module when first read, then kept as a plain attribute."""

    def getattr_(name: str) -> Any:
        if name in sources:
            value = getattr(importlib.import_module(sources[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(sources))

    return getattr_, dir_
