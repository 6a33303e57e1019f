"""The recipes of examples/ without their data (WMT and LM1B need the internet and GPUs).

Every model a recipe offers is an architecture fairseq knows (so a renamed preset cannot leave a
recipe behind), every Synthesizer variant is offered, and each script stops before fairseq when
its data or checkpoints are missing, saying which command makes them.
"""

import re
import subprocess

import pytest
from fairseq.models import ARCH_MODEL_REGISTRY

import fairseq_synth  # noqa: F401 (registers the architectures)
from fairseq_synth.models.architectures import VARIANTS
from helpers import REPO

EXAMPLES = REPO / "examples"


def run_script(script, *args, **env):
    return subprocess.run(["bash", str(EXAMPLES / script), *map(str, args)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


@pytest.mark.parametrize("script", ["wmt/train.sh", "lm1b/train.sh"])
def test_every_listed_model_is_a_registered_architecture(script):
    listing = run_script(script, "--list")
    assert listing.returncode == 0, listing.stderr
    names, archs = zip(*re.findall(r"^  (\S+)\s+--arch (\S+)", listing.stdout, flags=re.M))
    assert [arch for arch in archs if arch not in ARCH_MODEL_REGISTRY] == []
    assert set(VARIANTS) | {"transformer", "lightconv", "dynamicconv"} == set(names)


@pytest.mark.parametrize("script, args, fix", [
    ("wmt/train.sh", ["random"], "prepare-wmt14en2de.sh"),
    ("wmt/evaluate.sh", ["random"], "train.sh random"),
    ("lm1b/train.sh", ["dense_vanilla"], "prepare.sh"),
    ("lm1b/eval.sh", ["dense_vanilla"], "train.sh dense_vanilla"),
])
def test_missing_data_or_checkpoints_stop_early_naming_the_fix(script, args, fix, tmp_path):
    result = run_script(script, *args, DATA_BIN_ROOT=tmp_path / "data-bin",
                        CHECKPOINT_ROOT=tmp_path / "checkpoints")
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and fix in result.stderr, result.stderr
    assert not (tmp_path / "checkpoints").exists()  # nothing created on the way out


def test_unknown_pair_is_refused():
    result = run_script("wmt/train.sh", "random", PAIR="en-xx")
    assert result.returncode != 0 and "PAIR must be en-de or en-fr" in result.stderr
