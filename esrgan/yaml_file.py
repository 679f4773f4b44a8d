"""Reading a profile (``params.yaml``) safely: one reader, one-line errors that name the file.

``yaml.safe_load`` builds no objects but still lets through what makes later code crash or
hang: bytes that are not UTF-8, nesting deep enough to exhaust Python's recursion, a key written
twice (the last one silently wins), and aliases that expand to billions of values. Each is
refused here with one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from esrgan.errors import EsrganError

#: A profile is a few kilobytes; anything past this is not a parameters file.
MAX_BYTES = 1 << 20
#: Deeper than any profile (they nest 4 levels) and far below Python's recursion limit.
MAX_DEPTH = 32
#: Values after aliases are expanded: a profile has a few hundred.
MAX_VALUES = 100_000

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "YamlFileError", "parse_yaml", "read_yaml"]


class YamlFileError(EsrganError, ValueError):
    """A YAML file that cannot be read as parameters; one line naming the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: SafeLoader reports it below
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {str(key)[:60]!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _check_shape(data: Any, origin: str) -> None:
    """Depth and size of the loaded document, walked without recursion (aliases counted each time)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    values = 0
    while stack:
        node, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise YamlFileError(f"{origin}: more than {MAX_VALUES} values once aliases are expanded")
        if depth > MAX_DEPTH:
            raise YamlFileError(f"{origin}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _describe(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        where = f"line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}: " if exc.problem_mark else ""
        return f"{where}{exc.problem}"[:200]
    return " ".join(str(exc).split())[:200]


def parse_yaml(text: str, origin: str) -> Any:
    """Parse one YAML document as :func:`read_yaml` does (``origin`` names it in errors)."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        raise YamlFileError(f"{origin}: nested more than {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{origin}: cannot read YAML ({_describe(exc)})") from None
    _check_shape(data, origin)
    return data


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file with :class:`yaml.SafeLoader` semantics and the checks above.

    Raises:
        FileNotFoundError: ``path`` does not exist (its message names the file).
        YamlFileError: unreadable, too large, not UTF-8, invalid YAML, a duplicate key, too deep
            or too large once aliases are expanded.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_BYTES:
        raise YamlFileError(f"{path}: larger than {MAX_BYTES // 1024} KiB; not a parameters file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    return parse_yaml(text, str(path))
