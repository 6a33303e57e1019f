#!/usr/bin/env python
"""Average the parameters of the last N checkpoints of a fairseq run.

The same computation as fairseq's ``scripts/average_checkpoints.py`` (which the fairseq package
does not install): the element-wise mean of every entry of ``state["model"]`` (half tensors
averaged in float, integer buffers by floor division), the rest of the state taken from the
newest checkpoint. Checkpoints are chosen by fairseq's names: ``checkpoint_<epoch>_<updates>.pt``
(``--num-update-checkpoints``) or ``checkpoint<epoch>.pt`` (``--num-epoch-checkpoints``).

    python examples/wmt/average_checkpoints.py --inputs checkpoints/wmt14_en_de/random \\
        --num-update-checkpoints 5 --output checkpoints/wmt14_en_de/random/checkpoint.avg5.pt

Non-parameter buffers such as a Fixed Random alignment are identical in every checkpoint, so
their mean is themselves.
"""

import argparse
import collections
import os
import re
import sys

import torch

# torch >= 2.6 loads with weights_only=True by default: allow-list what fairseq checkpoints hold.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import fairseq_synth.checkpoint_safety  # noqa: E402,F401


def average_checkpoints(paths):
    """The averaged state: mean of state["model"] over ``paths``, the rest from ``paths[0]``."""
    new_state, sums, keys = None, collections.OrderedDict(), None
    for path in paths:
        state = torch.load(path, map_location="cpu")
        if new_state is None:
            new_state = state
        params = state["model"]
        if keys is None:
            keys = list(params.keys())
        elif keys != list(params.keys()):
            raise KeyError(f"{path} has other parameters than {paths[0]}: different models?")
        for k in keys:
            p = params[k]
            if p.dtype in (torch.float16, torch.bfloat16):
                p = p.float()
            if k in sums:
                sums[k] += p
            else:
                sums[k] = p.clone()
    for k, v in sums.items():
        if v.is_floating_point():
            v.div_(len(paths))
        else:
            v //= len(paths)
    new_state["model"] = sums
    return new_state


def last_checkpoints(folder, n, update_based, upper_bound=None):
    """The newest ``n`` checkpoints of ``folder``, newest first."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt" if update_based else r"checkpoint(\d+)\.pt")
    entries = []
    for name in os.listdir(folder):
        m = pattern.fullmatch(name)
        if m is not None and (upper_bound is None or int(m.group(1)) <= upper_bound):
            entries.append((int(m.group(1)), name))
    if len(entries) < n:
        kind = "update" if update_based else "epoch"
        raise SystemExit(
            f"error: found {len(entries)} {kind} checkpoints in {folder}, need {n} "
            f"(train longer, or average fewer)"
        )
    return [os.path.join(folder, name) for _, name in sorted(entries, reverse=True)[:n]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="checkpoint files, or one folder with --num-*-checkpoints")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-update-checkpoints", type=int,
                       help="average the last N checkpoint_<epoch>_<updates>.pt of the folder")
    group.add_argument("--num-epoch-checkpoints", type=int,
                       help="average the last N checkpoint<epoch>.pt of the folder")
    parser.add_argument("--checkpoint-upper-bound", type=int,
                        help="ignore checkpoints after this update (or epoch) number")
    args = parser.parse_args(argv)

    n = args.num_update_checkpoints or args.num_epoch_checkpoints
    if n is not None:
        if len(args.inputs) != 1 or not os.path.isdir(args.inputs[0]):
            parser.error("--num-*-checkpoints takes one folder as --inputs")
        args.inputs = last_checkpoints(
            args.inputs[0], n, args.num_update_checkpoints is not None,
            args.checkpoint_upper_bound,
        )
    print("averaging:\n  " + "\n  ".join(args.inputs))
    state = average_checkpoints(args.inputs)
    tmp = args.output + ".part"
    torch.save(state, tmp)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
