"""One model's training step (or encoder forward) with and without the factored attention
kernel, side by side.

attention_kernels.factored_attention (one SDPA over concatenated low-rank features) only pays
off from some number of keys on; FACTORED_MIN_KEYS is that crossover. This script measures it:
the same model and batch, the kernel switched on and off between interleaved steps of one
process (so machine noise hits both alike), at each length given.

    .venv/bin/python scripts/factored_ab.py --archs synth_dense_base,synth_dense_vanilla_base \\
        --lengths 64,128,256,512
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (shapes, models and training step of the benchmark)

OFF = 10 ** 9  # a threshold no input reaches: every step materializes its logits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="synth_dense_base,synth_dense_vanilla_base")
    parser.add_argument("--lengths", default="128,256,512")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per batch")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--mode", default="train", choices=["train", "encode"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    benchmark.quiet()
    import torch
    from fairseq import utils

    from fairseq_synth.modules import attention_kernels as kernels

    torch.set_num_threads(args.threads)
    utils.import_user_module(argparse.Namespace(user_dir=benchmark.USER_DIR))
    print(f"{args.mode}, {args.tokens} tokens per batch, medians of {args.repeats} interleaved runs\n")
    print("| architecture | keys | factored s/run | materialized s/run | factored speed-up |")
    print("|---|---:|---:|---:|---:|")
    dictionary = benchmark.make_dictionary(benchmark.parse_args([]).vocab)
    for arch in args.archs.split(","):
        for length in map(int, args.lengths.split(",")):
            bsz = max(1, args.tokens // length)
            shape = benchmark.parse_args(["--seq-len", str(length), "--batch-size", str(bsz)])
            runner = benchmark.Runner(arch, shape, dictionary, bsz, length, shape.gen_len)
            seconds = {0: [], OFF: []}
            for threshold in seconds:  # warm-up of both paths
                kernels.FACTORED_MIN_KEYS = threshold
                runner.run(args.mode)
            for repeat in range(args.repeats):
                for threshold in sorted(seconds, reverse=repeat % 2 == 1):
                    kernels.FACTORED_MIN_KEYS = threshold
                    start = time.perf_counter()
                    runner.run(args.mode)
                    seconds[threshold].append(time.perf_counter() - start)
            factored, materialized = (statistics.median(seconds[t]) for t in (0, OFF))
            print(f"| {arch} | {length} | {factored:.4f} | {materialized:.4f} | "
                  f"{materialized / factored:.2f}x |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
