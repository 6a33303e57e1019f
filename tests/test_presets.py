"""Every registered preset against fairseq's own preset of the same sizes, and the parameter
counts of scripts/count_params.py and the README against a count from the paper's formulas.

The expected values come from fairseq: its architecture functions from ``ARCH_CONFIG_REGISTRY``
applied to an argparse Namespace (as fairseq does), or models built through its registry. The
plugin's tables (VARIANTS, FAIRSEQ_PRESETS, LM_PRESETS) are not used: presets are found in
fairseq's registry by model class, and their counterparts from their names.
"""

import contextlib
import functools
import io
import re
import sys
from argparse import Namespace

import pytest
from fairseq import options
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.models.transformer import TransformerModel
from fairseq.modules import MultiheadAttention
from fairseq.modules.fairseq_dropout import FairseqDropout

from helpers import REPO, USER_DIR, build_lm_model, build_translation_model

import fairseq_synth  # noqa: F401 (registers the architectures)
from fairseq_synth.models.synth_transformer import SynthTransformerModel
from fairseq_synth.models.synth_transformer_lm import SynthTransformerLanguageModel
from fairseq_synth.modules import SynthesizerAttention

TRANSLATION_ARCHS = sorted(a for a, m in ARCH_MODEL_REGISTRY.items() if m is SynthTransformerModel)
LM_ARCHS = sorted(a for a, m in ARCH_MODEL_REGISTRY.items()
                  if m is SynthTransformerLanguageModel)
FAIRSEQ_TRANSFORMERS = {a[len("transformer_"):]: a for a, m in ARCH_MODEL_REGISTRY.items()
                        if m is TransformerModel and a.startswith("transformer_")}

# What the README promises beyond fairseq's names: synth_<V>_base / _big are the WMT base and big
# settings (big = width 1024, fairseq's transformer_wmt_en_de_big), and wmt_en_fr is base size
# ("as in the paper"; fairseq has no transformer_wmt_en_fr).
SHORT_SIZES = {"base": "transformer_wmt_en_de", "big": "transformer_wmt_en_de_big"}
EXTRA_SUFFIXES = {"wmt_en_fr": "transformer_wmt_en_de"}
# fairseq's sizes of those presets (encoder width, FFN, heads): guards the mapping above.
FAIRSEQ_SIZES = {"transformer_wmt_en_de": (512, 2048, 8),
                 "transformer_wmt_en_de_big": (1024, 4096, 16),
                 "transformer_iwslt_de_en": (512, 1024, 4)}


def translation_counterpart(arch):
    """(fairseq architecture of the same sizes, variant spelled with '_') of a registered name."""
    if arch == "synth_transformer":
        return "transformer", None
    short = re.fullmatch(r"synth_(\w+)_(base|big)", arch)
    if short:
        return SHORT_SIZES[short[2]], short[1]
    rest = re.fullmatch(r"transformer_synth_(\w+)", arch)
    assert rest, f"{arch}: not a name the README documents"
    suffixes = {**FAIRSEQ_TRANSFORMERS, **EXTRA_SUFFIXES}
    matches = [s for s in suffixes if rest[1].endswith("_" + s)]
    assert matches, f"{arch}: no fairseq transformer_<P> preset matches its suffix"
    suffix = max(matches, key=len)
    return suffixes[suffix], rest[1][: -len(suffix) - 1]


def lm_counterpart(arch):
    """(fairseq architecture, extra values, variant) of a registered LM name."""
    if arch == "synth_transformer_lm":
        return "transformer_lm", {}, None
    match = re.fullmatch(r"transformer_lm_synth_(\w+)_(gbw|tiny)", arch)
    assert match, f"{arch}: not a name the README documents"
    if match[2] == "gbw":
        return "transformer_lm_gbw", {}, match[1]
    # synth_transformer_lm's docstring: "fairseq's transformer_lm_gpt2_tiny (2 layers, width 64,
    # FFN 64) with 4 heads and --synth-max-len 64".
    return "transformer_lm_gpt2_tiny", {"decoder_attention_heads": 4}, match[1]


def apply_arch(arch, **preset):
    """A Namespace after fairseq's architecture function, as parse_args_and_arch applies it."""
    args = Namespace(**preset)
    ARCH_CONFIG_REGISTRY[arch](args)
    return vars(args)


def parse(arch, task, extra=()):
    """Arguments as fairseq-train parses them (parser, registry, architecture function)."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["/dev/null", "--user-dir", USER_DIR, "--task", task, "--arch", arch, *extra])
    return vars(args)


def assert_same_settings(ours, theirs, context):
    """Every value fairseq's preset set is ours too (ours may add synthesizer options)."""
    wrong = {k: (ours.get(k, "<unset>"), v) for k, v in theirs.items()
             if k != "arch" and ours.get(k, "<unset>") != v}
    assert not wrong, f"{context}: (ours, fairseq's) differ: {wrong}"


def test_fairseq_presets_have_the_sizes_the_readme_names():
    for arch, (width, ffn, heads) in FAIRSEQ_SIZES.items():
        args = apply_arch(arch)
        assert (args["encoder_embed_dim"], args["encoder_ffn_embed_dim"],
                args["encoder_attention_heads"]) == (width, ffn, heads), arch
    assert len(TRANSLATION_ARCHS) > 40 and len(LM_ARCHS) > 10


@pytest.mark.parametrize("arch", TRANSLATION_ARCHS)
def test_translation_preset_equals_fairseq_preset(arch):
    fairseq_arch, variant = translation_counterpart(arch)
    ours = apply_arch(arch)
    assert_same_settings(ours, apply_arch(fairseq_arch), f"{arch} vs {fairseq_arch}")
    assert_same_settings(parse(arch, "translation"), parse(fairseq_arch, "translation"),
                         f"{arch} vs {fairseq_arch} through fairseq's parser")
    if variant is not None:
        assert ours["encoder_synthesizer"].replace("+", "_") == variant
        assert ours["decoder_synthesizer"] == ours["encoder_synthesizer"]
    assert ours["synth_max_len"] == 256 and ours["synth_random_rank"] == 8


@pytest.mark.parametrize("arch", LM_ARCHS)
def test_lm_preset_equals_fairseq_preset(arch):
    fairseq_arch, extra, variant = lm_counterpart(arch)
    ours = parse(arch, "language_modeling")
    theirs = parse(fairseq_arch, "language_modeling",
                   [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()])
    assert_same_settings(ours, theirs, f"{arch} vs {fairseq_arch}")
    if fairseq_arch != "transformer_lm":  # the dataclass-only base has no function to apply
        assert_same_settings(apply_arch(arch), apply_arch(fairseq_arch, **extra),
                             f"{arch} vs {fairseq_arch} on a Namespace")
    if variant is not None:
        assert ours["decoder_synthesizer"].replace("+", "_") == variant
    if arch.endswith("_tiny"):
        sizes = (ours["decoder_layers"], ours["decoder_embed_dim"],
                 ours["decoder_ffn_embed_dim"], ours["decoder_attention_heads"])
        assert sizes == (2, 64, 64, 4) and ours["synth_max_len"] == 64
    elif arch.endswith("_gbw"):
        assert (ours["decoder_layers"], ours["decoder_embed_dim"]) == (12, 512)
        assert ours["synth_max_len"] == 256


# Small sizes for building models; everything else (dropout, layer norms, sharing) from presets.
TINY_SIZES = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32",
              "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "48",
              "--decoder-ffn-embed-dim", "48", "--encoder-attention-heads", "4",
              "--decoder-attention-heads", "4"]
TINY_LM_SIZES = ["--decoder-layers", "2", "--decoder-embed-dim", "32",
                 "--decoder-ffn-embed-dim", "48", "--decoder-attention-heads", "4",
                 "--tokens-per-sample", "16"]
SYNTH_SIZES = ["--synth-max-len", "16"]  # fairseq's own models do not know this option


def structure(model):
    """Everything but the self-attentions: parameter shapes and dropout probabilities."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if ".self_attn." not in n}
    dropouts = {n: m.p for n, m in model.named_modules()
                if isinstance(m, FairseqDropout) and ".self_attn." not in n}
    return shapes, dropouts


@pytest.mark.parametrize("arch", TRANSLATION_ARCHS)
def test_built_model_is_fairseqs_transformer_but_self_attention(arch):
    """Built through the registry: encoder-decoder attention is fairseq's MultiheadAttention,
    every self-attention a SynthesizerAttention, and all else is fairseq's preset's model."""
    fairseq_arch, _ = translation_counterpart(arch)
    extra = TINY_SIZES + ["--share-all-embeddings"]
    model, _ = build_translation_model(arch, extra + SYNTH_SIZES)
    reference, _ = build_translation_model(fairseq_arch, extra)
    assert structure(model) == structure(reference)
    for layer in model.decoder.layers:
        assert type(layer.encoder_attn) is MultiheadAttention
        assert isinstance(layer.self_attn, SynthesizerAttention)
        assert layer.self_attn.synthesizer == model.cfg.decoder_synthesizer
    for layer in model.encoder.layers:
        assert isinstance(layer.self_attn, SynthesizerAttention)
        assert layer.self_attn.synthesizer == model.cfg.encoder_synthesizer


@pytest.mark.parametrize("arch", LM_ARCHS)
def test_built_lm_is_fairseqs_lm_but_self_attention(arch):
    fairseq_arch, extra, _ = lm_counterpart(arch)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    model, _ = build_lm_model(arch, TINY_LM_SIZES + SYNTH_SIZES)
    reference, _ = build_lm_model(fairseq_arch, TINY_LM_SIZES + flags)
    assert structure(model) == structure(reference)
    assert all(isinstance(layer.self_attn, SynthesizerAttention)
               for layer in model.decoder.layers)


# ---------------------------------------------------------------------------------------------
# Parameter counts: scripts/count_params.py and the README's table
# ---------------------------------------------------------------------------------------------

def balanced_factors(length):
    """Factorized Dense's default (a, b): the most balanced a * b = L with a <= b."""
    a = max(d for d in range(1, int(length ** 0.5) + 1) if length % d == 0)
    return a, length // a


def self_attention_params(spec, width, heads, length, rank=8):
    """Trainable parameters of one synthesizer self-attention, from the paper's variant table
    (per head h of width d = C / H): value projection G and output projection, plus per part
    Random H L^2; Fixed Random 0 (not trained); Factorized Random 2 H L k; Dense W1 (C x C, b1)
    and W2 (d x L, b2) per head; Factorized Dense the same with a + b outputs; dot product Q, K;
    and one mixture logit per part of a mixture."""
    linear = width * width + width
    head_dim = width // heads
    a, b = balanced_factors(length)
    per_part = {
        "random": heads * length * length,
        "fixed_random": 0,
        "factorized_random": 2 * heads * length * rank,
        "dense": linear + heads * (head_dim * length + length),
        "factorized_dense": linear + heads * (head_dim * (a + b) + a + b),
        "vanilla": 2 * linear,
    }
    parts = spec.split("+")
    return 2 * linear + sum(per_part[p] for p in parts) + (len(parts) if len(parts) > 1 else 0)


@functools.lru_cache(maxsize=None)
def fairseq_count(arch, vocab):
    """(trainable parameters, embedding parameters) of fairseq's ``arch`` built through its
    registry with a joined dictionary of ``vocab`` symbols and shared embeddings."""
    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    model, _ = build_translation_model(arch, ["--share-all-embeddings"], dictionary)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, model.encoder.embed_tokens.weight.numel()


def expected_counts(archs, vocab):
    """{arch: (trainable parameters, embedding parameters)} with shared embeddings: fairseq's
    Transformer of the same sizes, built through its registry, with every self-attention (four
    C x C projections) replaced by the synthesizer's count."""
    counts = {}
    for arch in archs:
        if arch in ARCH_MODEL_REGISTRY and ARCH_MODEL_REGISTRY[arch] is TransformerModel:
            fairseq_arch, spec = arch, None
        else:
            fairseq_arch, _ = translation_counterpart(arch)
            spec = apply_arch(arch)["encoder_synthesizer"]
        total, embeddings = fairseq_count(fairseq_arch, vocab)
        if spec is not None:
            args = apply_arch(fairseq_arch)
            width, heads = args["encoder_embed_dim"], args["encoder_attention_heads"]
            layers = args["encoder_layers"] + args["decoder_layers"]
            change = self_attention_params(spec, width, heads, 256) - 4 * (width * width + width)
            total += layers * change
        counts[arch] = total, embeddings
    return counts


def table_rows(text):
    """{arch: (params M, non-embedding M, delta M)} of count_params' markdown tables in text."""
    rows, in_table = {}, False
    for line in text.splitlines():
        if line.startswith("| architecture | params (M) | non-embedding (M) | delta (M) |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if in_table and re.fullmatch(r"[+-]?\d+\.\d\d", cells[1]):
            rows[cells[0]] = tuple(float(c) for c in cells[1:4])
    return rows


def assert_rows_match(rows, counts, reference_arch):
    reference = counts[reference_arch][0]
    for arch, (total, embeddings) in counts.items():
        expected = (total / 1e6, (total - embeddings) / 1e6, (total - reference) / 1e6)
        assert rows[arch] == pytest.approx(expected, abs=0.0051), arch


def run_count_params(argv):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import count_params
    finally:
        sys.path.remove(str(REPO / "scripts"))
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        count_params.main(argv)
    return output.getvalue()


def test_count_params_script_matches_the_formulas():
    """The script on a small vocabulary (its default architecture list is the README's)."""
    archs = ["transformer_wmt_en_de", "synth_fixed_random_base", "synth_dense_vanilla_base",
             "synth_factorized_dense_base", "synth_random_dense_base"]
    rows = table_rows(run_count_params(["--vocab", "1000", "--archs", ",".join(archs)]))
    assert set(rows) == set(archs)
    assert_rows_match(rows, expected_counts(archs, 1000), "transformer_wmt_en_de")


def documented_tables():
    """[(file, rows)] of count_params.py's --vocab 32768 tables in the Markdown documentation."""
    tables = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        if "count_params.py --vocab 32768" in text and table_rows(text):
            tables.append((path.relative_to(REPO), table_rows(text)))
    return tables


def test_documented_parameter_table_matches_the_formulas():
    """The documented table (count_params.py --vocab 32768) is what the formulas give."""
    tables = documented_tables()
    assert tables, "no count_params.py --vocab 32768 table found in README.md or docs/"
    for path, rows in tables:
        assert len(rows) >= 9 and "transformer_wmt_en_de" in rows, path
        assert_rows_match(rows, expected_counts(list(rows), 32768), "transformer_wmt_en_de")


def test_wmt_example_parameter_column_matches_the_formulas():
    """examples/wmt/README.md quotes the same counts, to 0.1M, as "60.9M (+0.0M)"."""
    text = (REPO / "examples" / "wmt" / "README.md").read_text()
    quoted = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\|.*\| `(\w+)` \|.*\| ([\d.]+)M \(([+-]?[\d.]+)M?\) \|", line)
        if match:
            name = match[1]
            arch = "transformer_wmt_en_de" if name == "transformer" else f"synth_{name}_base"
            quoted[arch] = float(match[2]), float(match[3])
    assert len(quoted) >= 7 and "transformer_wmt_en_de" in quoted
    counts = expected_counts(list(quoted), 32768)
    reference = counts["transformer_wmt_en_de"][0]
    for arch, (total, _) in counts.items():
        expected = (total / 1e6, (total - reference) / 1e6)
        assert quoted[arch] == pytest.approx(expected, abs=0.051), arch
