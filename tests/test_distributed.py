"""Data-parallel training on fairseq's own engine, two CPU processes over gloo.

``torchrun --nproc_per_node 2 scripts/train_distributed_cpu.py DATA ...`` (the launcher adds the
CPU flags fairseq needs, see its docstring) must train one model, not two: the log reports world
size 2, both ranks end with bit-identical parameters (gradients really are all-reduced), and the
result matches one process with ``--update-freq 2``, which sees the same two batches per update
(fairseq gives rank r batches r, r + 2, ...; --update-freq 2 groups batches 2i, 2i + 1).
"""

import socket
import subprocess

import pytest
import torch

from helpers import BIN, REPO, cli_env
from reliability_helpers import TRANSLATION_ARGS, load_checkpoint, train, train_losses

UPDATES = 8
ARGS = [*TRANSLATION_ARGS, "--max-tokens", "400", "--seed", "3", "--max-update", str(UPDATES),
        "--save-interval-updates", str(UPDATES)]

# Runs the launcher unchanged; after fairseq-train returns, every rank saves its own parameters
# (fairseq itself saves only rank 0's), so the test can compare the ranks.
RANK_DUMP = """
import os, sys
import fairseq_cli.train  # first: it sets up fairseq's log format before fairseq is imported
import torch
sys.path.insert(0, {scripts!r})
from fairseq import trainer
import train_distributed_cpu

models = []
original_init = trainer.Trainer.__init__
def remember(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    models.append(self)
trainer.Trainer.__init__ = remember
train_distributed_cpu.main()
state = {{k: v.detach().cpu() for k, v in models[0].model.state_dict().items()}}
torch.save(state, os.path.join({save_dir!r}, "rank%s.pt" % os.environ["RANK"]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(reversal_data, tmp_path_factory):
    distributed_dir = tmp_path_factory.mktemp("ddp")
    driver = distributed_dir / "driver.py"
    driver.write_text(RANK_DUMP.format(scripts=str(REPO / "scripts"),
                                       save_dir=str(distributed_dir)))
    env = cli_env(OMP_NUM_THREADS="1")  # one thread per process: two processes, two cores
    proc = subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(driver), str(reversal_data), *ARGS, "--save-dir", str(distributed_dir)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    single_dir = tmp_path_factory.mktemp("update_freq_2")
    single = train(reversal_data, single_dir, *ARGS[len(TRANSLATION_ARGS):], "--update-freq", "2")
    return distributed_dir, log, single_dir, single.stdout + single.stderr


def test_log_shows_two_gloo_workers(runs):
    _, log, _, _ = runs
    assert "training on 2 devices" in log
    assert "distributed init (rank 0)" in log and "distributed init (rank 1)" in log


def test_both_ranks_end_with_identical_parameters(runs):
    distributed_dir = runs[0]
    rank0 = torch.load(distributed_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(distributed_dir / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    saved = load_checkpoint(distributed_dir / "checkpoint_last.pt")["model"]
    for name, value in saved.items():
        assert torch.equal(value, rank0[name]), name


def test_two_processes_match_one_process_with_update_freq_2(runs):
    distributed_dir, log, single_dir, single_log = runs
    distributed = load_checkpoint(distributed_dir / "checkpoint_last.pt")
    single = load_checkpoint(single_dir / "checkpoint_last.pt")
    for state in (distributed, single):
        assert state["optimizer_history"][-1]["num_updates"] == UPDATES
    # Same batches per update; only the order of float summation differs (all-reduce vs
    # accumulation), so the parameters agree to float32 rounding after UPDATES Adam steps.
    for name, value in single["model"].items():
        torch.testing.assert_close(distributed["model"][name], value, rtol=1e-4, atol=1e-5,
                                   msg=name)
    distributed_losses, single_losses = train_losses(log), train_losses(single_log)
    assert sorted(distributed_losses) == sorted(single_losses) == list(range(1, UPDATES + 1))
    for update, loss in single_losses.items():
        assert abs(distributed_losses[update] - loss) < 1e-3, update
