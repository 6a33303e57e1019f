#!/usr/bin/env python3
"""Draw the synthesized alignments of a fairseq-synth checkpoint (translation or LM) as PNGs.

    python scripts/plot_alignments.py CHECKPOINT [--data DIR] [--sentence "..."]
        [--target "..."] [--length N] [--out DIR]

For every synthesized self-attention (``encoder`` / ``decoder`` layer ``i``; decoders causal),
like the figures of Tay et al. (ICML 2021), one panel per head:

- ``<stack>_layer<i>_<part>.png``: for each input-independent part (random, fixed_random,
  factorized_random), softmax of its leading N x N logits, with the causal mask in decoders;
- ``<stack>_layer<i>_sentence.png`` (with ``--sentence``): the weights of the whole, possibly
  mixed, self-attention for that sentence (Dense, factorized Dense and mixtures show here);
- ``mixture_weights.png``: a bar chart of the learned weight of each part, per layer.

Sentences are given in the model's vocabulary (apply its BPE first). A translation decoder reads
``--target`` (by default the sentence itself, fine for a joined dictionary).
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

# Before fairseq is imported: one of its modules sets the root logger to DEBUG on import.
logging.basicConfig(format="%(levelname)s | %(name)s | %(message)s", level=logging.WARNING)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from fairseq import checkpoint_utils, utils  # noqa: E402
from fairseq.models import FairseqEncoderDecoderModel  # noqa: E402
from torch import Tensor  # noqa: E402

USER_DIR = Path(__file__).resolve().parents[1] / "fairseq_synth"
utils.import_user_module(argparse.Namespace(user_dir=str(USER_DIR)))
from fairseq_synth.modules import SynthesizerAttention  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint .pt of this plugin")
    parser.add_argument("--data", help="data directory with the dictionaries "
                                       "(default: the one the checkpoint was trained on)")
    parser.add_argument("--sentence", help="plot the attention weights for this input")
    parser.add_argument("--target", help="translation models: the decoder's input "
                                         "(default: --sentence)")
    parser.add_argument("--length", type=int, default=32,
                        help="N of the N x N input-independent alignments drawn (at most L)")
    parser.add_argument("--out", default="alignments", help="output directory")
    return parser


def load_model(checkpoint: str, data=None):
    overrides = {"data": data} if data else {}
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides=overrides
    )
    return models[0].eval(), task


def self_attentions(model) -> Iterator[Tuple[str, SynthesizerAttention, bool]]:
    """(label, attention, causal) of every synthesized self-attention, e.g. "decoder_layer0"."""
    for stack in ("encoder", "decoder"):
        coder = getattr(model, stack, None)
        for i, layer in enumerate(getattr(coder, "layers", [])):
            if isinstance(layer.self_attn, SynthesizerAttention):
                yield f"{stack}_layer{i}", layer.self_attn, stack == "decoder"


def input_independent_probs(attention: SynthesizerAttention, length: int, causal: bool):
    """{part: (H, N, N) softmax of the part's leading logits} for Random-like parts."""
    length = min(length, attention.max_len)
    mask = torch.ones(length, length, dtype=torch.bool).triu(1) if causal else None
    probs = {}
    for name, alignment in attention.alignments.items():
        if alignment.input_dependent:
            continue
        logits = alignment.shared_logits(length, length).detach().float()  # (H, N, N)
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        probs[name] = torch.softmax(logits, dim=-1)
    return probs


def sentence_inputs(model, task, sentence: str, target=None) -> Dict[str, Tensor]:
    """The model's forward arguments for one sentence, as the training data presents them."""
    source = task.source_dictionary.encode_line(sentence, add_if_not_exist=False).long()
    if not isinstance(model, FairseqEncoderDecoderModel):  # LM: </s> starts the sequence
        return {"src_tokens": torch.cat([source[-1:], source[:-1]])[None]}
    target = task.target_dictionary.encode_line(target or sentence, add_if_not_exist=False)
    prev_output_tokens = torch.cat([target[-1:], target[:-1]]).long()[None]
    return {"src_tokens": source[None], "src_lengths": torch.tensor([source.numel()]),
            "prev_output_tokens": prev_output_tokens}


def sentence_head_weights(model, net_input) -> Dict[str, Tensor]:
    """{label: (H, T, S)} per-head attention weights of every synthesized self-attention.

    Hooks ask each self-attention for its per-head weights (need_head_weights) during one
    ordinary forward of the model.
    """
    weights, handles = {}, []

    def ask_for_heads(module, args, kwargs):
        return args, {**kwargs, "need_head_weights": True}

    for label, attention, _ in self_attentions(model):
        def keep(module, args, kwargs, output, label=label):
            weights[label] = output[1][:, 0].detach().float()  # (H, B=1, T, S) -> (H, T, S)

        handles.append(attention.register_forward_pre_hook(ask_for_heads, with_kwargs=True))
        handles.append(attention.register_forward_hook(keep, with_kwargs=True))
    try:
        with torch.no_grad():
            model(**net_input)
    finally:
        for handle in handles:
            handle.remove()
    return weights


def plot_heads(probs: Tensor, title: str, path: Path, query_labels=None, key_labels=None):
    """One heatmap per head of probs (H, T, S)."""
    heads = probs.size(0)
    columns = min(heads, 4)
    rows = (heads + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for head, ax in enumerate(axes.flat):
        if head >= heads:
            ax.axis("off")
            continue
        ax.imshow(probs[head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {head}", fontsize=9)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        if key_labels is not None and len(key_labels) <= 40:
            ax.set_xticks(range(len(key_labels)), key_labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(query_labels)), query_labels, fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mixture_weights(model, path: Path):
    """Grouped bars: the weight of each part (1 for a lone part) in every layer."""
    labels, weights = [], []
    for label, attention, _ in self_attentions(model):
        labels.append(label)
        weights.append({part: 1.0 if w is None else float(w.detach())
                        for part, w in attention.mixture_weights().items()})
    parts = sorted({part for layer in weights for part in layer})
    width = 0.8 / len(parts)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(labels) + 2), 3.5))
    for k, part in enumerate(parts):
        heights = [layer.get(part, 0.0) for layer in weights]
        ax.bar([i + k * width for i in range(len(labels))], heights, width, label=part)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=45,
                  ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("mixture weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(args) -> List[Path]:
    model, task = load_model(args.checkpoint, args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for label, attention, causal in self_attentions(model):
        for part, probs in input_independent_probs(attention, args.length, causal).items():
            path = out / f"{label}_{part}.png"
            plot_heads(probs, f"{label}: {part}, softmax of the first {probs.size(1)} positions",
                       path)
            written.append(path)
    if args.sentence:
        net_input = sentence_inputs(model, task, args.sentence, args.target)
        symbols = {"encoder": [task.source_dictionary[t] for t in net_input["src_tokens"][0]]}
        symbols["decoder"] = symbols["encoder"]
        if "prev_output_tokens" in net_input:
            decoder_input = net_input["prev_output_tokens"][0]
            symbols["decoder"] = [task.target_dictionary[t] for t in decoder_input]
        for label, probs in sentence_head_weights(model, net_input).items():
            tokens = symbols[label.split("_")[0]]
            path = out / f"{label}_sentence.png"
            plot_heads(probs, f"{label}: attention weights", path, tokens, tokens)
            written.append(path)
    path = out / "mixture_weights.png"
    plot_mixture_weights(model, path)
    written.append(path)
    return written


if __name__ == "__main__":
    for written_path in main(get_parser().parse_args()):
        print(written_path)
