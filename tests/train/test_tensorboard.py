"""The TF-free TensorBoard writer produces event files TensorBoard's reader accepts."""

import json
import struct
import subprocess
import sys

import pytest

from kit.train.tensorboard import ScalarWriter, crc32c


def test_crc32c_known_value():
    assert crc32c(b"123456789") == 0xE3069283


def test_records_are_framed(tmp_path):
    w = ScalarWriter(tmp_path)
    w.add_scalars(3, {"train/loss": 1.5, "skip": "text"})
    w.close()
    data = w.path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    assert len(data) > 2 * (16 + n)  # file_version event + one scalar event


# TensorFlow's own reader is the oracle for the file format. `kit` keeps TF out
# of its processes, so the check runs in a child that never imports `kit`.
_READ_WITH_TF = """
import json, sys
import tensorflow as tf
events = list(tf.compat.v1.train.summary_iterator(sys.argv[1]))
print(json.dumps([events[0].file_version, events[1].step, events[1].summary.value[0].tag,
                  events[1].summary.value[0].simple_value]))
"""


@pytest.mark.slow  # imports TensorFlow in a subprocess
def test_tensorflow_reads_the_scalars(tmp_path):
    w = ScalarWriter(tmp_path)
    w.add_scalars(7, {"val/val_loss": 2.25})
    w.close()
    proc = subprocess.run(
        [sys.executable, "-c", _READ_WITH_TF, str(w.path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    version, step, tag, value = json.loads(proc.stdout.strip().splitlines()[-1])
    assert version == "brain.Event:2"
    assert step == 7
    assert tag == "val/val_loss"
    assert value == pytest.approx(2.25)
