"""Statistics of the study (scripts/study.py): corpus-level scores with bootstrap resampling.

A system is one model trained with one or several seeds; each seed's output on the test set is
reduced to per-unit sufficient statistics (sentences for BLEU and chrF, blocks for a language
model's log-likelihood), so a resample of the test set is a resample of rows, and a corpus score
is a function of the summed rows.

- ``confidence_interval``: percentile bootstrap of a system's score (95% by default).
- ``paired_bootstrap``: Koehn (2004) paired bootstrap resampling as sacreBLEU implements it
  (``sacrebleu.significance._paired_bs_test``, after Moses' script): the same resampled test
  sets for both systems, the p-value of the observed |difference| under the centred resampled
  differences. With one seed per system it is sacreBLEU's test exactly (same RNG, same indices).

With several seeds a system's score on a resample is the mean of its seeds' corpus scores on the
resampled test set, over seeds drawn with replacement (a two-level bootstrap: test units, then
training runs). The interval and the test then carry training noise as well as test-set noise,
in the spirit of Clark et al. (2011), "Better hypothesis testing for statistical machine
translation: controlling for optimizer instability": a seed-averaged gap smaller than the spread
between seeds is not significant, however many test sentences agree with it. (Drawing k of
k seeds understates their variance by a factor (k - 1) / k: only more seeds remove that.)
"""

import math
from typing import Callable, Dict, List, Sequence

import numpy as np

# sacreBLEU's default seed (SACREBLEU_SEED), so one-seed results reproduce its paired_bs.
BOOTSTRAP_SEED = 12345
N_RESAMPLES = 1000
# Seeds of the second level of the bootstrap (which training runs a resample draws).
SEED_DRAW_SEED = 54321

Metric = Callable[[np.ndarray], float]  # summed sufficient statistics (d,) -> score


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-sentence BLEU sufficient statistics, (N, 2 + 2 * 4), sacreBLEU's default BLEU."""
    from sacrebleu.metrics import BLEU

    return np.array(BLEU()._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64)


def chrf_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-sentence chrF sufficient statistics, sacreBLEU's default chrF."""
    from sacrebleu.metrics import CHRF

    return np.array(CHRF()._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64)


def bleu_from_statistics(summed: np.ndarray) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU()._compute_score_from_stats(list(summed)).score


def chrf_from_statistics(summed: np.ndarray) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF()._compute_score_from_stats(list(summed)).score


def perplexity_from_statistics(summed: np.ndarray) -> float:
    """Rows are (sum of natural-log token probabilities, token count) of one test block."""
    log_prob, count = summed
    return math.exp(-log_prob / count)


METRICS: Dict[str, Metric] = {
    "bleu": bleu_from_statistics,
    "chrf": chrf_from_statistics,
    "ppl": perplexity_from_statistics,
}


def resample_indices(n_units: int, n_resamples: int = N_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(n_resamples, n_units) row indices drawn with replacement, as sacreBLEU draws them."""
    rng = np.random.default_rng(seed)
    return rng.choice(n_units, size=(n_resamples, n_units), replace=True)


def resampled_scores(seeds_stats: List[np.ndarray], metric: Metric, indices: np.ndarray,
                     seed_draws: np.random.Generator = None) -> np.ndarray:
    """A system's score on each resample, (R,): the mean of its seeds' corpus scores on the
    resampled test set, over k seeds drawn with replacement from its k (one seed: that seed)."""
    per_seed = np.array([[metric(stats[rows].sum(0)) for rows in indices]
                         for stats in seeds_stats])  # (k, R)
    k, n_resamples = per_seed.shape
    if k == 1:
        return per_seed[0]
    if seed_draws is None:
        seed_draws = np.random.default_rng(SEED_DRAW_SEED)
    drawn = seed_draws.integers(k, size=(n_resamples, k))  # (R, k) seed numbers
    return per_seed[drawn, np.arange(n_resamples)[:, None]].mean(1)


def corpus_score(seeds_stats: List[np.ndarray], metric: Metric) -> float:
    """The seed-averaged corpus score on the real test set."""
    return float(np.mean([metric(stats.sum(0)) for stats in seeds_stats]))


def confidence_interval(seeds_stats: List[np.ndarray], metric: Metric, level: float = 0.95,
                        indices: np.ndarray = None) -> List[float]:
    """Percentile bootstrap interval [low, high] of a system's (seed-averaged) score, over
    test units and, with several seeds, over seeds."""
    if indices is None:
        indices = resample_indices(len(seeds_stats[0]))
    scores = resampled_scores(seeds_stats, metric, indices)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(scores, tail)), float(np.percentile(scores, 100 - tail))]


def paired_bootstrap(system: List[np.ndarray], baseline: List[np.ndarray], metric: Metric,
                     indices: np.ndarray = None) -> Dict[str, float]:
    """Paired bootstrap test of system against baseline on the same test units.

    Returns the observed difference (system - baseline) and its two-sided p-value, computed as
    sacreBLEU does: the resampled |differences| centred on their mean approximate the null
    distribution of the observed |difference|, p = (#{centred > observed} + 1) / (R + 1).
    A system with several seeds has its seeds resampled too (``resampled_scores``), so a
    difference within the seeds' spread reads as a tie.
    """
    if len(system[0]) != len(baseline[0]):
        raise ValueError(f"systems scored on different test sets: {len(system[0])} vs "
                         f"{len(baseline[0])} units")
    if indices is None:
        indices = resample_indices(len(system[0]))
    difference = corpus_score(system, metric) - corpus_score(baseline, metric)
    # One generator for both systems: their seeds are drawn independently (their runs are).
    seed_draws = np.random.default_rng(SEED_DRAW_SEED)
    sampled = np.abs(resampled_scores(system, metric, indices, seed_draws)
                     - resampled_scores(baseline, metric, indices, seed_draws))
    centred = sampled - sampled.mean()
    p_value = (np.sum(centred > abs(difference)).item() + 1) / (len(indices) + 1)
    return {"difference": float(difference), "p_value": float(p_value)}


def verdict(difference: float, p_value: float, higher_is_better: bool,
            alpha: float = 0.05) -> str:
    """'better' / 'worse' than the baseline when significant at alpha, else 'tie'."""
    if p_value >= alpha or difference == 0:
        return "tie"
    return "better" if (difference > 0) == higher_is_better else "worse"
