"""Shared by the reliability tests: small fairseq-train configurations, json logs, checkpoints."""

import json
import re
from pathlib import Path

import torch

import fairseq_synth  # noqa: F401 (allow-lists fairseq's checkpoint types for torch.load)
from helpers import TINY_ARGS, USER_DIR, run_cli

# A translation model that exercises every kind of synthesizer state: a fixed random matrix
# (a buffer), trainable Random and Dense alignments, dot product, and two mixtures (weights).
TRANSLATION_ARGS = [
    "--user-dir", USER_DIR, "--arch", "synth_transformer",
    "--encoder-synthesizer", "fixed_random+vanilla", "--decoder-synthesizer", "random+dense",
    *TINY_ARGS, "--optimizer", "adam", "--lr", "0.002", "--lr-scheduler", "inverse_sqrt",
    "--warmup-updates", "5", "--criterion", "label_smoothed_cross_entropy",
    "--label-smoothing", "0.1", "--max-tokens", "1000", "--cpu", "--num-workers", "0",
    "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints",
]

# Fields of fairseq's json logs that measure time, not training.
TIMING_FIELDS = re.compile(r"(^|_)(wps|ups|wall|train_wall|gb_free)$")


def json_log(output: str) -> dict:
    """fairseq's ``--log-format json`` records, ``{(tag, num_updates): stats}`` without timings.

    Tags are fairseq's: ``train_inner`` (every --log-interval updates), ``train`` (end of an
    epoch or of training) and ``valid``.
    """
    records = {}
    for tag, payload in re.findall(r"\| (train_inner|train|valid) \| (\{.*\})", output):
        stats = json.loads(payload)
        updates = next(v for k, v in stats.items() if k.endswith("num_updates"))
        records[(tag, int(updates))] = {
            k: v for k, v in stats.items() if not TIMING_FIELDS.search(k)
        }
    return records


def train_losses(output: str) -> dict:
    """``{num_updates: loss}`` of every ``train_inner`` record."""
    return {u: float(s["loss"]) for (tag, u), s in json_log(output).items() if tag == "train_inner"}


def load_checkpoint(path) -> dict:
    """A fairseq checkpoint, loaded as fairseq does on torch >= 2.6: ``weights_only=True``."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def num_updates(state: dict) -> int:
    return state["optimizer_history"][-1]["num_updates"]


def train(data, save_dir, *args, **kwargs):
    """fairseq-train ``TRANSLATION_ARGS`` on ``data``; returns the completed process."""
    return run_cli("fairseq-train", data, *TRANSLATION_ARGS, "--save-dir", save_dir, *args,
                   **kwargs)


def tensor_differences(a: dict, b: dict, path=""):
    """Paths where two (nested) checkpoint structures differ; tensors compared bitwise."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        same = torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and (
            a.shape == b.shape and torch.equal(a, b)
        )
        return [] if same else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path} keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in tensor_differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path} length"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in tensor_differences(x, y,
                                                                                  f"{path}/{i}")]
    return [] if a == b else [path]


def language_model_data(reversal_data: Path) -> Path:
    """The toy corpus's source side binarized for ``--task language_modeling`` (made once)."""
    text, destdir = Path(reversal_data).parent, Path(reversal_data).parent / "lm-bin"
    if not (destdir / "test.idx").exists():
        run_cli("fairseq-preprocess", "--only-source", "--trainpref", text / "train.src",
                "--validpref", text / "valid.src", "--testpref", text / "test.src",
                "--destdir", destdir, "--workers", "1")
    return destdir
