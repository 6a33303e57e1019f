"""fairseq-train, data parallel over several CPU processes (gloo), launched by torchrun.

    torchrun --nproc_per_node 2 scripts/train_distributed_cpu.py DATA \
        --user-dir fairseq_synth --arch synth_random_base ... [any fairseq-train option]

fairseq trains data parallel on CPU through its own engine (``distributed_utils.call_main``,
gloo all-reduce, sharded batches), but three of its launch paths assume CUDA:

- under torchrun (``RANK``/``WORLD_SIZE``/``MASTER_*`` set) it sets
  ``device_id = rank % torch.cuda.device_count()``: ZeroDivisionError without a GPU;
- without torchrun it spawns ``min(torch.cuda.device_count(), world size)`` = 0 processes
  (an AssertionError "world size is 2 but have 0 available devices");
- ``--ddp-backend c10d`` / ``pytorch_ddp`` (the default) wraps the model in torch's
  DistributedDataParallel with ``device_ids=[device_id]``, which torch refuses for a CPU module.

Resuming has a fourth trap, on any device: rank 0 reads ``checkpoint_last.pt`` and broadcasts it
through ``torch.load``, which torch >= 2.6 runs with ``weights_only=True``, and the broadcast
state holds fairseq's OmegaConf config, which no safe allow-list should admit. With
``--load-checkpoint-on-all-dp-ranks`` every rank reads the (safe) file itself.

Every one of them has a flag that avoids it, so this script patches nothing: it reads torchrun's
environment, adds

    --cpu --distributed-backend gloo --distributed-init-method env:// --distributed-no-spawn
    --distributed-rank $RANK --distributed-world-size $WORLD_SIZE
    --load-checkpoint-on-all-dp-ranks --ddp-backend legacy_ddp

(``--ddp-backend`` only if not given: ``no_c10d``/``legacy_ddp`` are fairseq's own all-reduce of
the flattened gradients) and runs fairseq-train's ``cli_main`` unchanged. The same flags, with
``tcp://HOST:PORT`` and one ``--distributed-rank`` per process, work without torchrun.
"""

import os
import sys
from typing import List, Mapping, Optional

GPU_ONLY_DDP_BACKENDS = ("c10d", "pytorch_ddp")


def option_value(argv: List[str], name: str) -> Optional[str]:
    """The last value given to ``name`` (``--x v`` or ``--x=v``), as argparse would take it."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def distributed_cpu_argv(argv: List[str], env: Mapping[str, str]) -> List[str]:
    """fairseq-train arguments plus the flags of one torchrun CPU worker (see the docstring)."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in env]
    if missing:
        raise SystemExit(
            f"{sys.argv[0]}: {', '.join(missing)} not set; launch with "
            f"torchrun --nproc_per_node N {sys.argv[0]} DATA [fairseq-train options]"
        )
    world_size = env["WORLD_SIZE"]
    given = option_value(argv, "--distributed-world-size")
    if given is not None and given != world_size:
        raise SystemExit(
            f"--distributed-world-size {given} disagrees with torchrun's WORLD_SIZE {world_size}; "
            f"drop the option (torchrun's --nnodes x --nproc_per_node sets it)"
        )
    ddp_backend = option_value(argv, "--ddp-backend")
    if ddp_backend in GPU_ONLY_DDP_BACKENDS:
        raise SystemExit(
            f"--ddp-backend {ddp_backend} wraps the model in torch DistributedDataParallel with "
            f"fairseq's device_ids=[device_id], which torch refuses on CPU; use legacy_ddp "
            f"(the default of this script) or no_c10d"
        )
    extra = [
        "--cpu", "--distributed-backend", "gloo", "--distributed-init-method", "env://",
        "--distributed-no-spawn", "--distributed-rank", env["RANK"],
        "--distributed-world-size", world_size, "--load-checkpoint-on-all-dp-ranks",
    ]
    if ddp_backend is None:
        extra += ["--ddp-backend", "legacy_ddp"]
    return [*argv, *extra]


def main(argv: Optional[List[str]] = None):
    from fairseq_cli import train

    argv = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0], *distributed_cpu_argv(argv, os.environ)]
    try:
        train.cli_main()
    finally:
        # fairseq leaves its gloo process group up; torch then destroys it during interpreter
        # shutdown, which now and then aborts a rank that has finished and saved ("terminate
        # called without an active exception", SIGABRT), and torchrun reports the run failed.
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
