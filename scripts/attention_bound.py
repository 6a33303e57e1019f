"""How fast could any synthesizer make our models? Two bounds, measured beside the references.

Both bounds are our base model (synth_random_base's sizes) with its self-attention replaced;
embeddings, layer norms, dropout, FFNs, encoder-decoder attention, output projection, loss and
optimizer step stay fairseq's:

- no_self_attention_bound: each self-attention returns zeros at no cost. No self-attention of
  any kind inside fairseq's Transformer layers trains faster than this model.
- projections_only_bound: each self-attention is its value and output projections, out_proj(
  v_proj(x)), with no mixing over positions. Every synthesizer has these two projections (the
  paper's G(X) and the output projection, Y = softmax(B) G(X)) and then mixes the values, so none
  trains faster than this model.

Their ratios to dynamicconv are the most that work on the alignment (Random's softmax(R) @ V)
could reach. They are timed interleaved with the other architectures, as scripts/benchmark.py
times them, at the benchmark's target shape.

    .venv/bin/python scripts/attention_bound.py --repeats 15 --out docs/attention_bound.md
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (shapes, models and timing of the benchmark)

BOUNDS = ["no_self_attention_bound", "projections_only_bound"]


def register_bound_architectures():
    """Registers the BOUNDS architectures (model synth_bound; the architecture name picks the
    self-attention that replaces the synthesizer)."""
    import torch
    from fairseq.models import register_model, register_model_architecture
    from fairseq.models.transformer import TransformerConfig
    from torch import nn

    from fairseq_synth.models.architectures import FAIRSEQ_PRESETS, synth_preset
    from fairseq_synth.models.synth_layers import (
        SynthTransformerDecoder,
        SynthTransformerDecoderLayer,
        SynthTransformerEncoder,
        SynthTransformerEncoderLayer,
        wrap_layer,
    )
    from fairseq_synth.models.synth_transformer import SynthTransformerModel

    class NoSelfAttention(nn.Module):
        """Self-attention whose output is zero: the layer keeps only its residual path."""

        def __init__(self, embed_dim, num_heads):
            super().__init__()
            self.num_heads, self.head_dim = num_heads, embed_dim // num_heads

        def forward(self, query, key=None, value=None, **unused):
            return self.output(query), None  # (T, B, C), no attention weights

        def output(self, query):
            return torch.zeros_like(query)

        def _get_input_buffer(self, incremental_state):
            return {}  # no decoding state: fairseq's decoder layer asks for it

    class ProjectionsOnly(NoSelfAttention):
        """The value and output projections of SynthesizerAttention, no mixing over positions."""

        def __init__(self, embed_dim, num_heads):
            super().__init__(embed_dim, num_heads)
            self.v_proj = nn.Linear(embed_dim, embed_dim)
            self.out_proj = nn.Linear(embed_dim, embed_dim)

        def output(self, query):
            return self.out_proj(self.v_proj(query))

    attention = {"no_self_attention_bound": NoSelfAttention,
                 "projections_only_bound": ProjectionsOnly}

    class EncoderLayer(SynthTransformerEncoderLayer):
        def build_self_attention(self, embed_dim, cfg):
            return attention[cfg.arch](embed_dim, cfg.encoder.attention_heads)

    class DecoderLayer(SynthTransformerDecoderLayer):
        def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
            return attention[cfg.arch](embed_dim, cfg.decoder.attention_heads)

    class Encoder(SynthTransformerEncoder):
        def build_encoder_layer(self, cfg):
            return wrap_layer(EncoderLayer(cfg, return_fc=self.return_fc), cfg)

    class Decoder(SynthTransformerDecoder):
        def build_decoder_layer(self, cfg, no_encoder_attn=False):
            return wrap_layer(DecoderLayer(cfg, no_encoder_attn), cfg)

    @register_model("synth_bound")
    class BoundModel(SynthTransformerModel):
        @classmethod
        def build_encoder(cls, args, src_dict, embed_tokens):
            return Encoder(TransformerConfig.from_namespace(args), src_dict, embed_tokens)

        @classmethod
        def build_decoder(cls, args, tgt_dict, embed_tokens):
            return Decoder(TransformerConfig.from_namespace(args), tgt_dict, embed_tokens,
                           no_encoder_attn=args.no_cross_attention)

    for name in BOUNDS:
        register_model_architecture("synth_bound", name)(
            synth_preset("random", FAIRSEQ_PRESETS["wmt_en_de"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="transformer,dynamicconv,synth_random_base",
                        help="architectures timed beside the bounds")
    parser.add_argument("--modes", default="train")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--out", help="also write the table, with this command, to this file")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    shape = benchmark.parse_args(["--smoke"] if args.smoke else [])
    benchmark.quiet()
    import torch
    from fairseq import utils

    torch.set_num_threads(shape.threads)
    utils.import_user_module(argparse.Namespace(user_dir=benchmark.USER_DIR))
    register_bound_architectures()
    names = [*BOUNDS, *args.archs.split(",")]
    modes = args.modes.split(",")
    results = benchmark.measure(
        names, shape, benchmark.make_dictionary(shape.vocab), shape.batch_size, shape.seq_len,
        shape.gen_len, modes, args.repeats, False, lambda message: print(message, file=sys.stderr))
    failed = [f"{name}: {results[name]['error']}" for name in names if "error" in results[name]]
    if failed:
        raise SystemExit("not built: " + "; ".join(failed))
    lines = [
        "# Training speed bounds: our base model without its self-attention's mixing",
        "",
        "no_self_attention_bound: every self-attention returns zeros at no cost. "
        "projections_only_bound: every self-attention is out_proj(v_proj(x)), the two "
        "projections of the paper's synthesizers (value projection G(X), output projection), "
        "with no mixing over positions. No such synthesizer in fairseq's Transformer layers "
        "trains faster than projections_only_bound.",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'scripts/attention_bound.py', *argv])}`",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; {shape.layers}+{shape.layers} layers, width "
        f"{shape.embed_dim or 512}, batch {shape.batch_size} x {shape.seq_len}, "
        f"{shape.threads} threads; medians of {args.repeats} interleaved repeats, with the "
        "middle half (quartiles) of the per-repeat ratios.",
        "",
    ]
    refs = [r for r in benchmark.REFERENCES if r in names]
    lines.append("| architecture | params (M) | mode | tokens/s | "
                 + " | ".join(f"x {r}" for r in refs) + " |")
    lines.append("|---|---:|---|---:|" + "---:|" * len(refs))
    for name in names:
        for mode in modes:
            entry = results[name]["modes"][mode]
            if "error" in entry:
                raise SystemExit(f"{name} {mode} failed: {entry['error']}")
            cells = [f"{entry['ratio'][ref]:.2f} "
                     f"({benchmark.spread_text(benchmark.middle_half(entry['ratio_runs'][ref]))})"
                     for ref in refs]
            lines.append(f"| {name} | {results[name]['params'] / 1e6:.1f} | {mode} | "
                         f"{entry['tok_s']:.0f} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
