#!/usr/bin/env python
"""Parameter counts per architecture, built through fairseq's registry, beside the paper's.

    .venv/bin/python scripts/count_params.py --vocab 32768
    .venv/bin/python scripts/count_params.py --archs synth_random_big,transformer_wmt_en_de_big

Counts are trainable parameters (a Fixed Random matrix is a buffer, as the paper counts it).
The paper's WMT En-De table (PAPER.md) is quoted for the base models; its absolute numbers depend
on a vocabulary it does not state, so the comparable figure is the difference to the
Transformer, printed as "delta".
"""

import argparse
import sys

import torch
from fairseq import options, tasks
from fairseq.data import Dictionary

REPO_USER_DIR = __file__.rsplit("/scripts/", 1)[0] + "/fairseq_synth"

DEFAULT_ARCHS = [
    "transformer_wmt_en_de", "synth_fixed_random_base", "synth_random_base", "synth_dense_base",
    "synth_random_dense_base", "synth_random_vanilla_base", "synth_dense_vanilla_base",
    "synth_factorized_random_base", "synth_factorized_dense_base",
]
# WMT'14 En-De, base size, millions (PAPER.md).
PAPER_PARAMS = {
    "transformer_wmt_en_de": 67, "synth_fixed_random_base": 61, "synth_random_base": 67,
    "synth_dense_base": 62, "synth_random_dense_base": 67, "synth_random_vanilla_base": 73,
    "synth_dense_vanilla_base": 74,
}


def build(arch: str, dictionary: Dictionary, extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["/dev/null", "--user-dir", REPO_USER_DIR, "--task", "translation",
                 "--arch", arch, "--source-lang", "src", "--target-lang", "tgt", *extra]
    )
    task = tasks.get_task("translation")(args, dictionary, dictionary)
    return task.build_model(args)


def count(model) -> tuple:
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n)
    return total, embeddings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=32768, help="joined dictionary size")
    parser.add_argument("--archs", default=",".join(DEFAULT_ARCHS))
    parser.add_argument("--no-share-embeddings", action="store_true",
                        help="separate encoder/decoder embeddings (default: shared, as WMT En-De)")
    args = parser.parse_args(argv)

    dictionary = Dictionary()
    for i in range(args.vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    extra = [] if args.no_share_embeddings else ["--share-all-embeddings"]
    rows, reference = [], None
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        total, embeddings = count(build(arch, dictionary, extra))
        reference = total if reference is None else reference
        rows.append((arch, total, embeddings))

    print(f"vocabulary {len(dictionary)}, embeddings {'separate' if extra == [] else 'shared'}; "
          f"delta = difference to the first architecture ({rows[0][0]})\n")
    print("| architecture | params (M) | non-embedding (M) | delta (M) | paper (M) | paper delta (M) |")
    print("|---|---|---|---|---|---|")
    paper_reference = PAPER_PARAMS.get(rows[0][0])
    for arch, total, embeddings in rows:
        paper = PAPER_PARAMS.get(arch)
        paper_delta = paper - paper_reference if paper and paper_reference else None
        print(f"| {arch} | {total / 1e6:.2f} | {(total - embeddings) / 1e6:.2f} | "
              f"{(total - reference) / 1e6:+.2f} | {paper if paper else '-'} | "
              f"{f'{paper_delta:+d}' if paper_delta is not None else '-'} |")


if __name__ == "__main__":
    sys.exit(main())
