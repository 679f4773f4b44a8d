"""What an exported ONNX file says about its generator, read without torch or the ``onnx`` package.

:func:`esrgan.export.export_onnx` writes these ``metadata_props`` (all strings):

``esrgan.scale``, ``esrgan.in_ch``, ``esrgan.out_ch``, ``esrgan.num_feat``, ``esrgan.num_block``,
``esrgan.num_grow``: the architecture; ``esrgan.weights_sha256``: :func:`weights_digest` of the
weights, the key of the compiled-model cache (two exports of the same weights share it).

A file without them (an export older than this) still runs: the scale is then measured with one
tiny forward pass and the widths default to the paper's (which only makes memory plans cautious),
and the digest is the file's own SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "esrgan."
#: The RRDBNet unshuffle factor of each scale (scales 1 and 2 fold space into channels first).
UNSHUFFLE = {1: 4, 2: 2}


@dataclass(frozen=True)
class ModelInfo:
    """A generator's shape facts: what tiling, memory planning and the cache need."""

    scale: int
    in_ch: int = 3
    out_ch: int = 3
    num_feat: int = 64
    num_block: int = 23
    num_grow: int = 32
    #: Identity of the weights (SHA-256 hex); the compiled-model cache key.
    digest: str = ""

    @property
    def unshuffle(self) -> int:
        """H and W of every forward pass must be multiples of this."""
        return UNSHUFFLE.get(self.scale, 1)

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` that describe this model in an ONNX file."""
        return {
            f"{PREFIX}scale": str(self.scale),
            f"{PREFIX}in_ch": str(self.in_ch),
            f"{PREFIX}out_ch": str(self.out_ch),
            f"{PREFIX}num_feat": str(self.num_feat),
            f"{PREFIX}num_block": str(self.num_block),
            f"{PREFIX}num_grow": str(self.num_grow),
            f"{PREFIX}weights_sha256": self.digest,
        }

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelInfo | None:
        """The info in ``props``, or None when the file was not written by ``export_onnx``."""
        try:
            return cls(
                scale=int(props[f"{PREFIX}scale"]),
                in_ch=int(props[f"{PREFIX}in_ch"]),
                out_ch=int(props[f"{PREFIX}out_ch"]),
                num_feat=int(props[f"{PREFIX}num_feat"]),
                num_block=int(props[f"{PREFIX}num_block"]),
                num_grow=int(props[f"{PREFIX}num_grow"]),
                digest=props[f"{PREFIX}weights_sha256"],
            )
        except (KeyError, ValueError):
            return None


def weights_digest(named_arrays: Iterable[tuple[str, bytes, str, tuple[int, ...]]]) -> str:
    """SHA-256 over ``(name, raw little-endian bytes, dtype name, shape)`` in name order."""
    h = hashlib.sha256()
    for name, raw, dtype, shape in sorted(named_arrays, key=lambda item: item[0]):
        h.update(f"{name}\0{dtype}\0{','.join(map(str, shape))}\0{len(raw)}\0".encode())
        h.update(raw)
    return h.hexdigest()


class MetadataError(ValueError):
    """Bytes that are not an ONNX model (a truncated or foreign file)."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise MetadataError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise MetadataError("varint too long")


def _fields(data: bytes | memoryview) -> Iterable[tuple[int, int, bytes | memoryview | int]]:
    """Top-level protobuf fields ``(number, wire type, value)``; nested messages are not decoded."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise MetadataError("truncated field")
            yield number, wire, data[pos : pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise MetadataError(f"unsupported wire type {wire}")


#: ``ModelProto.metadata_props`` (repeated ``StringStringEntryProto``: key = 1, value = 2).
_METADATA_PROPS = 14


def read_props(onnx_bytes: bytes) -> dict[str, str]:
    """The ``metadata_props`` of a serialized ONNX ``ModelProto`` (the graph is skipped, not parsed)."""
    view = memoryview(onnx_bytes)
    props: dict[str, str] = {}
    for number, wire, value in _fields(view):
        if number == _METADATA_PROPS and wire == 2 and not isinstance(value, int):
            entry = {
                n: bytes(v).decode("utf-8", "replace")
                for n, w, v in _fields(value)
                if w == 2 and not isinstance(v, int)
            }
            props[entry.get(1, "")] = entry.get(2, "")
    return props


def file_digest(onnx_bytes: bytes) -> str:
    """The fallback cache key of an ONNX file without our metadata."""
    return hashlib.sha256(onnx_bytes).hexdigest()


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _encode_bytes(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def with_props(onnx_bytes: bytes, props: dict[str, str]) -> bytes:
    """``onnx_bytes`` with ``props`` added to its ``metadata_props``.

    Appending fields to a serialized protobuf message is how protobuf merges messages, so the
    model is not re-serialized (nor needs the ``onnx`` package); keys already present are kept
    as they were, so call this on a fresh export.
    """
    extra = b"".join(
        _encode_bytes(_METADATA_PROPS, _encode_bytes(1, key.encode()) + _encode_bytes(2, value.encode()))
        for key, value in props.items()
    )
    return onnx_bytes + extra
