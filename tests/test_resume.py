"""Stopping and resuming fairseq-train changes nothing (CPU, fixed seed, dropout on).

N updates straight versus N/2 updates, stop, then ``fairseq-train`` again with ``--max-update N``
in the same ``--save-dir`` (fairseq resumes from ``checkpoint_last.pt``): the final parameters and
buffers, the optimizer state and every logged loss must be identical, bit for bit. The stop is in
the middle of the second epoch and the run crosses another epoch boundary after it, so fairseq's
data-iterator position, its per-update seeds (dropout) and each epoch's batches are all restored.
The models hold a fixed random matrix (a buffer), trainable Random/Dense alignments and learned
mixture weights.

This needs ``--update-epoch-batch-itr True``. Without it fairseq reuses the first epoch's
batches (the order of same-length sentences) in every later epoch of a process, but a process
resumed in epoch e builds them with the seed of epoch e: resuming after the first epoch then
trains on differently composed batches (shown below).

Interrupting training with SIGINT or SIGTERM mid-epoch leaves the last good checkpoint intact,
and resuming from it reaches the same parameters as the uninterrupted run. The signal comes
from the training process itself at a known point (during the forward pass of an update two
after a save; tests/interrupting_train.py), so the test does not race the process.
"""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli_env
from reliability_helpers import (
    TRANSLATION_ARGS,
    USER_DIR,
    json_log,
    language_model_data,
    load_checkpoint,
    num_updates,
    run_cli,
    tensor_differences,
)

N = 50  # updates: about 17-20 per epoch, so the stop at N/2 is mid-epoch 2, the end in epoch 3
SAVE_INTERVAL = 5
SEED = ["--seed", "7", "--save-interval-updates", str(SAVE_INTERVAL)]
LOSSLESS = ["--update-epoch-batch-itr", "True"]
DROPOUT = ["--dropout", "0.1", "--attention-dropout", "0.1", "--activation-dropout", "0.1"]

CONFIGS = {
    # Encoder fixed_random+vanilla (buffer + mixture), decoder random+dense (mixture).
    "translation": lambda data: [data, *TRANSLATION_ARGS, *DROPOUT, *SEED, *LOSSLESS],
    # A three-part mixture with a buffer in a causal LM (fairseq's dataclass-configured path).
    "language_model": lambda data: [
        language_model_data(data), "--task", "language_modeling", "--user-dir", USER_DIR,
        "--arch", "transformer_lm_synth_dense_vanilla_tiny",
        "--decoder-synthesizer", "fixed_random+dense+vanilla", "--synth-max-len", "24",
        "--tokens-per-sample", "24", "--sample-break-mode", "none", "--batch-size", "32",
        "--optimizer", "adam", "--lr", "0.003", "--cpu", "--num-workers", "0",
        "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints",
        *DROPOUT, *SEED, *LOSSLESS,
    ],
}


def fairseq_train(args, save_dir, max_update):
    return run_cli("fairseq-train", *args, "--save-dir", save_dir, "--max-update", max_update)


def epoch_length(output):
    """Updates per epoch: the first end-of-epoch record of fairseq's log."""
    return min(u for tag, u in json_log(output) if tag == "train")


@pytest.fixture(scope="module")
def straight_runs(reversal_data, tmp_path_factory):
    """``kind -> (args, save_dir, log)`` of N updates straight, trained once per module."""
    cache = {}

    def straight(kind):
        if kind not in cache:
            args = CONFIGS[kind](reversal_data)
            save_dir = tmp_path_factory.mktemp(f"{kind}-straight")
            cache[kind] = args, save_dir, fairseq_train(args, save_dir, N).stdout
        return cache[kind]

    return straight


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def runs(request, straight_runs, tmp_path_factory):
    """The straight run and the stopped-then-resumed run of one configuration."""
    args, straight_dir, straight = straight_runs(request.param)
    split_dir = tmp_path_factory.mktemp(f"{request.param}-split")
    first = fairseq_train(args, split_dir, N // 2)
    second = fairseq_train(args, split_dir, N)
    return {
        "args": args, "straight_dir": straight_dir, "split_dir": split_dir,
        "straight": straight, "first": first.stdout, "second": second.stdout,
    }


def test_stop_is_mid_epoch_and_resume_continues_where_it_stopped(runs):
    length = epoch_length(runs["straight"])
    assert length < N // 2 < 2 * length < N  # stop mid-epoch 2, end in epoch 3
    stopped = load_checkpoint(runs["split_dir"] / f"checkpoint_2_{N // 2}.pt")
    assert stopped["extra_state"]["train_iterator"]["epoch"] == 2
    assert stopped["extra_state"]["train_iterator"]["iterations_in_epoch"] == N // 2 - length
    assert f"Loaded checkpoint {runs['split_dir']}/checkpoint_last.pt (epoch 2 @ {N // 2} " \
           f"updates)" in runs["second"]
    resumed = sorted(u for tag, u in json_log(runs["second"]) if tag == "train_inner")
    assert resumed == list(range(N // 2 + 1, N + 1))  # nothing repeated, nothing skipped
    last = load_checkpoint(runs["split_dir"] / "checkpoint_last.pt")
    assert last["extra_state"]["train_iterator"]["epoch"] == 3


def test_parameters_buffers_and_optimizer_state_are_identical(runs):
    straight = load_checkpoint(runs["straight_dir"] / "checkpoint_last.pt")
    resumed = load_checkpoint(runs["split_dir"] / "checkpoint_last.pt")
    assert num_updates(straight) == num_updates(resumed) == N
    # The synthesizer's own state is part of what is compared.
    keys = straight["model"].keys()
    assert any(k.endswith("alignments.fixed_random.weight") for k in keys)  # a buffer
    assert any(k.endswith("mixture_logits") for k in keys)
    assert any(k.endswith("alignments.dense.rows.out_weight") for k in keys)
    assert tensor_differences(straight["model"], resumed["model"]) == []
    assert tensor_differences(straight["last_optimizer_state"],
                              resumed["last_optimizer_state"]) == []
    # fairseq appends one entry per training session; the last holds the lr scheduler state.
    assert straight["optimizer_history"][-1] == resumed["optimizer_history"][-1]
    assert straight["extra_state"]["train_iterator"] == resumed["extra_state"]["train_iterator"]


def test_every_logged_loss_is_identical(runs):
    straight = json_log(runs["straight"])
    split = {**json_log(runs["first"]), **json_log(runs["second"])}
    inner = [key for key in straight if key[0] == "train_inner"]
    assert len(inner) == N
    # Per-update losses, gradient norms, learning rates, batch sizes; validation losses; and
    # fairseq's end-of-epoch averages, whose meters are restored from the checkpoint too.
    assert {key: split.get(key) for key in straight} == straight


def test_without_update_epoch_batch_itr_a_later_epoch_resumes_differently(
        reversal_data, tmp_path):
    """Why the recipe needs --update-epoch-batch-itr: fairseq's default is not lossless."""
    args = [reversal_data, *TRANSLATION_ARGS, *SEED]
    straight = fairseq_train(args, tmp_path / "straight", N)
    fairseq_train(args, tmp_path / "split", N // 2)
    resumed = fairseq_train(args, tmp_path / "split", N)
    first_resumed = json_log(resumed.stdout)[("train_inner", N // 2 + 1)]
    assert json_log(straight.stdout)[("train_inner", N // 2 + 1)]["loss"] != first_resumed["loss"]
    assert tensor_differences(load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")["model"],
                              load_checkpoint(tmp_path / "split" / "checkpoint_last.pt")["model"])


# --- interruption -----------------------------------------------------------------------------

SAVED = 25  # the last checkpoint before the interruption (a --save-interval-updates point)
INTERRUPTED = SAVED + 2  # the update during which the signal arrives
INTERRUPTING_TRAIN = Path(__file__).with_name("interrupting_train.py")


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupted_training(args, signum):
    """fairseq-train that sends ``signum`` to itself during update INTERRUPTED, after its
    forward pass (tests/interrupting_train.py): a known point, not a timer."""
    # The same environment as the straight run it is compared with, bit for bit.
    # SIGINT at its default, as in a terminal: a shell that starts jobs in the background
    # (`cmd &` without job control) makes children ignore it, and Python then never raises
    # KeyboardInterrupt, so the SIGINT case would test nothing but that inheritance.
    env = cli_env(INTERRUPT_AT_UPDATE=str(INTERRUPTED), INTERRUPT_SIGNAL=signum.name)
    return subprocess.run([sys.executable, str(INTERRUPTING_TRAIN), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=900,
                          preexec_fn=default_sigint)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_training_keeps_last_checkpoint_and_resumes_exactly(
        signum, straight_runs, tmp_path):
    args, straight_dir, straight_log = straight_runs("translation")
    length = epoch_length(straight_log)
    # Saved and interrupted in the same epoch, neither at its end: mid-epoch 2.
    assert length < SAVED < INTERRUPTED < 2 * length and SAVED % SAVE_INTERVAL == 0
    save_dir = tmp_path / "checkpoints"
    training = interrupted_training([*args, "--save-dir", save_dir, "--max-update", N], signum)
    log = training.stdout + training.stderr
    # Killed by the signal (an uncaught KeyboardInterrupt re-raises SIGINT), not finished.
    assert training.returncode == -signum, log[-4000:]
    assert f"sending {signum.name} during update {INTERRUPTED}" in log
    logged = sorted(u for tag, u in json_log(log) if tag == "train_inner")
    assert logged == list(range(1, INTERRUPTED)), log[-4000:]  # died inside update INTERRUPTED
    assert f"Saved checkpoint {save_dir}/checkpoint_2_{SAVED}.pt (epoch 2 @ {SAVED} " \
           f"updates" in log

    # The last good checkpoint is intact: the one of update SAVED, bit for bit the straight
    # run's checkpoint of that update (model and optimizer).
    last = load_checkpoint(save_dir / "checkpoint_last.pt")
    assert num_updates(last) == SAVED
    assert not list(save_dir.glob("*.tmp"))
    same_point = load_checkpoint(straight_dir / f"checkpoint_2_{SAVED}.pt")
    assert tensor_differences(same_point["model"], last["model"]) == []
    assert tensor_differences(same_point["last_optimizer_state"],
                              last["last_optimizer_state"]) == []

    # Resuming from it reaches exactly the parameters of the run that was never interrupted.
    resumed = fairseq_train(args, save_dir, N)
    assert f"(epoch 2 @ {SAVED} updates)" in resumed.stdout
    straight = load_checkpoint(straight_dir / "checkpoint_last.pt")
    final = load_checkpoint(save_dir / "checkpoint_last.pt")
    assert num_updates(final) == N
    assert tensor_differences(straight["model"], final["model"]) == []
    assert tensor_differences(straight["last_optimizer_state"],
                              final["last_optimizer_state"]) == []
