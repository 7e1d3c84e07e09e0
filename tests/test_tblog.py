"""The TF-free TensorBoard writer produces event files TensorBoard's reader accepts."""

import struct

import pytest

from kit.tblog import ScalarWriter, crc32c


def test_crc32c_known_value():
    assert crc32c(b"123456789") == 0xE3069283


def test_records_are_framed(tmp_path):
    w = ScalarWriter(tmp_path)
    w.add_scalars(3, {"train/loss": 1.5, "skip": "text"})
    w.close()
    data = w.path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    assert len(data) > 2 * (16 + n)  # file_version event + one scalar event


def test_tensorflow_reads_the_scalars(tmp_path):
    tf = pytest.importorskip("tensorflow")  # only to check the format; kit itself never imports it
    w = ScalarWriter(tmp_path)
    w.add_scalars(7, {"val/val_loss": 2.25})
    w.close()
    events = list(tf.compat.v1.train.summary_iterator(str(w.path)))
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 7
    assert events[1].summary.value[0].tag == "val/val_loss"
    assert events[1].summary.value[0].simple_value == pytest.approx(2.25)
