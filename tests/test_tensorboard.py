"""fairseq-train --tensorboard-logdir writes TensorBoard event files for a Synthesizer model.

scripts/setup.sh installs tensorboardX, which fairseq's TensorboardProgressBarWrapper falls back
to when torch.utils.tensorboard (the `tensorboard` package) is absent. tensorboardX ships a
writer but no reader, so the event files are read back here as TFRecords (length, masked CRC,
record, masked CRC) and decoded with tensorboardX's own Event protobuf.
"""

import math
import struct
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c

from helpers import TINY_ARGS, USER_DIR, run_cli

UPDATES, LOG_INTERVAL = 6, 2


def read_events(path: Path):
    """Every Event of one tfevents file, each record's two checksums verified."""
    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        assert header_crc == masked_crc32c(header), f"bad length checksum in {path}"
        record = data[offset + 12:offset + 12 + length]
        (record_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
        assert record_crc == masked_crc32c(record), f"bad record checksum in {path}"
        events.append(Event.FromString(record))
        offset += 16 + length
    return events


def scalars(run_dir: Path):
    """{tag: [(step, value)]} of every scalar in a run directory's event files."""
    found = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboard_logdir_gets_train_and_valid_scalars(reversal_data, tmp_path):
    logdir = tmp_path / "tb"
    result = run_cli(
        "fairseq-train", reversal_data, "--user-dir", USER_DIR, "--arch", "synth_random_base",
        *TINY_ARGS, "--share-all-embeddings", "--optimizer", "adam", "--lr", "0.001",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", "500", "--max-update", UPDATES, "--log-interval", LOG_INTERVAL,
        "--log-format", "simple", "--no-save", "--cpu", "--seed", "1",
        "--tensorboard-logdir", logdir)
    output = result.stdout + result.stderr
    # With tensorboardX installed fairseq neither asks for it at import nor finds no writer.
    assert "Please install tensorboardX" not in output
    assert "tensorboard not found" not in output

    # fairseq writes one run per tag: train_inner (every --log-interval updates), train (the
    # summary when training stops) and valid (validation at the stop).
    assert {p.name for p in logdir.iterdir()} >= {"train_inner", "train", "valid"}
    inner = scalars(logdir / "train_inner")
    steps = [step for step, _ in inner["loss"]]
    assert steps == list(range(LOG_INTERVAL, UPDATES + 1, LOG_INTERVAL))
    assert all(math.isfinite(v) and v > 0 for _, v in inner["loss"])
    # The logged values are the ones fairseq printed: the last train_inner line's loss.
    printed = [line for line in output.splitlines() if "| INFO | train_inner |" in line]
    last_loss = float(printed[-1].split("loss=")[1].split(",")[0])
    assert abs(inner["loss"][-1][1] - last_loss) < 0.01
    for run in ("train", "valid"):
        final = scalars(logdir / run)
        assert [step for step, _ in final["loss"]] == [UPDATES], run
        assert math.isfinite(final["loss"][0][1])
