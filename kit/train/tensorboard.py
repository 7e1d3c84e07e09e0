"""A minimal TensorBoard scalar writer with no TensorFlow dependency.

Keras' `TensorBoard` callback writes through `tf.summary`, and TensorFlow must
stay out of the training path (on a TPU VM it grabs the TPU). TensorBoard's
event file is simple: TFRecord framing (length, masked CRC32C, payload,
masked CRC32C) around `Event` protobufs, so the few bytes are written here by
hand. `tensorboard --logdir runs/` then shows every run's curves.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    c = crc32c(data)
    return struct.pack("<I", (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None, scalars: dict | None = None) -> bytes:
    msg = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
    if file_version is not None:
        msg += _field_bytes(3, file_version.encode())
    if scalars:
        summary = b"".join(
            _field_bytes(1, _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", float(v)))
            for tag, v in scalars.items()
        )
        msg += _field_bytes(5, summary)
    return msg


class ScalarWriter:
    """Append scalar summaries to a TensorBoard event file in `logdir`.

    Example:
        >>> import tempfile
        >>> w = ScalarWriter(tempfile.mkdtemp())
        >>> w.add_scalars(1, {"train/loss": 2.5})
        >>> w.close()
    """

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = self.logdir / name
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across add_scalars calls
        self._write(_event(time.time(), 0, file_version="brain.Event:2"))

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._file.write(header + _masked(header) + record + _masked(record))
        self._file.flush()

    def add_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """Write `{tag: value}` at `step` (non-numeric values are skipped)."""
        clean = {k: float(v) for k, v in scalars.items() if isinstance(v, int | float)}
        if clean:
            self._write(_event(time.time(), int(step), scalars=clean))

    def close(self) -> None:
        self._file.close()
