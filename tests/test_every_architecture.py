"""fairseq-style binary tests for every architecture the plugin registers.

As fairseq's own ``tests/test_binaries.py`` does, each architecture trains a few updates through
fairseq_cli's ``train.main`` on small binarized data (its preset, with tiny sizes), then
translation models go through ``generate.main`` (beam search, incremental decoding, BLEU) and
language models through ``eval_lm.main`` (a finite perplexity). The list comes from fairseq's
registry, so registering an architecture adds it here.
"""

import math

import pytest
from fairseq import options
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq_cli import eval_lm, generate, train

import fairseq_synth  # noqa: F401 (registers the architectures)
from helpers import TINY_ARGS, USER_DIR
from reliability_helpers import language_model_data

PLUGIN_MODELS = {"SynthTransformerModel": "translation",
                 "SynthTransformerLanguageModel": "language_modeling"}
ARCHS = sorted(
    (arch, PLUGIN_MODELS[model.__name__]) for arch, model in ARCH_MODEL_REGISTRY.items()
    if model.__name__ in PLUGIN_MODELS
)
COMMON = ["--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--no-progress-bar"]
# The decoder-only models take the decoder half of the tiny sizes.
LM_SIZES = [a for pair in zip(TINY_ARGS[::2], TINY_ARGS[1::2])
            if not pair[0].startswith("--encoder") for a in pair]


def test_every_plugin_model_has_architectures():
    tasks = {task for _, task in ARCHS}
    assert tasks == {"translation", "language_modeling"}
    assert len(ARCHS) > 60  # 8 variants x (6 translation + 2 LM presets) + the two base models


def run_train(data, save_dir, arch, task, extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--task", task, "--arch", arch, *COMMON, *extra,
        "--optimizer", "adam", "--lr", "0.001", "--max-update", "3", "--batch-size", "16",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--seed", "1",
    ])
    train.main(args)
    assert (save_dir / "checkpoint_last.pt").is_file()
    return save_dir / "checkpoint_last.pt"


@pytest.mark.parametrize("arch,task", ARCHS, ids=[arch for arch, _ in ARCHS])
def test_train_then_generate_or_eval_lm(arch, task, reversal_data, tmp_path):
    if task == "translation":
        checkpoint = run_train(reversal_data, tmp_path, arch, task,
                               [*TINY_ARGS, "--max-tokens", "400"])
        parser = options.get_generation_parser()
        args = options.parse_args_and_arch(parser, [
            str(reversal_data), "--path", str(checkpoint), *COMMON, "--beam", "2",
            "--max-len-b", "12", "--batch-size", "16", "--required-batch-size-multiple", "1",
            "--results-path", str(tmp_path / "generate"),
        ])
        scorer = generate.main(args)
        assert scorer is not None and 0 <= scorer.score() <= 100
        hypotheses = (tmp_path / "generate" / "generate-test.txt").read_text().count("\nH-")
        assert hypotheses == 100  # every test sentence translated
    else:
        data = language_model_data(reversal_data)
        lm_args = [*LM_SIZES, "--tokens-per-sample", "24", "--sample-break-mode", "none"]
        checkpoint = run_train(data, tmp_path, arch, task, lm_args)
        parser = options.get_eval_lm_parser()
        args = options.parse_args_and_arch(parser, [
            str(data), "--path", str(checkpoint), *COMMON, "--tokens-per-sample", "24",
            "--batch-size", "16",
        ])
        results = eval_lm.main(args)
        assert math.isfinite(results["perplexity"]) and results["perplexity"] > 1
