"""The analysis behind ``benchmark.parquet``: the declared result tables (every column's
type, unit and meaning, :mod:`siblings.schema`), the joins that put every comparison on one
row, amplification and query reduction (the similarity correlations are
:mod:`siblings.correlate`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from siblings.cards import ModelCard
from siblings.defend import selected_lam, variant_name
from siblings.engine import percent
from siblings.intervals import RESAMPLES, percentile_interval, resamples, wilson
from siblings.schema import Column, TableSchema

# --- The tables this module builds, column by column: the declarations that check them
# at write time and that docs/results.md is rendered from (siblings.schema). -------------

NAME, HASH, TEXT, FLAG = "name", "12-hex hash", "text", "true/false"
FRACTION, PERCENT, POINTS = "fraction 0-1", "percent", "percentage points"
TIMES, COSINE = "ratio (x)", "cosine, -1 to 1"


def _text(name: str, unit: str, meaning: str) -> Column:
    return Column(name, pa.string(), unit, meaning)


def _number(name: str, unit: str, meaning: str) -> Column:
    return Column(name, pa.float64(), unit, meaning)


def _count(name: str, unit: str, meaning: str) -> Column:
    return Column(name, pa.int64(), unit, meaning)


def _flag(name: str, meaning: str) -> Column:
    return Column(name, pa.bool_(), FLAG, meaning)


def _paired_interval(name: str, unit: str, prefix: str | None = None) -> tuple[Column, Column]:
    """``<prefix>ci_low`` and ``<prefix>ci_high`` (prefix: ``<name>_``): the 95% interval of
    a comparison of two results on the same images, whose bootstrap resamples both with the
    same draws."""
    prefix = f"{name}_" if prefix is None else prefix
    return tuple(_number(f"{prefix}ci_{end}", unit,
                         f"{side} end of the 95% percentile interval of `{name}` over "
                         f"{RESAMPLES:,} bootstrap resamples of the images, both sides "
                         f"resampled with the same draws (paired); null where `{name}` is")
                 for end, side in (("low", "lower"), ("high", "upper")))


DATASET = _text("dataset", NAME, "the dataset every model was trained and tested on (the "
                                 "config's `dataset.name`)")
# What the aggregate stage stamps on every table's rows.
STAMP = (_text("config_hash", HASH, "fingerprint of the run's whole validated config, saved "
                                    "beside the tables as `config.yaml`"),
         _text("run_name", NAME, "the config's `name`: the run's folder under `results/`"))
TARGET_ARCH = _text("arch", NAME, "architecture of the full model: the target attacked, or "
                                  "compared with its source")
ATTACK = _text("attack", NAME, "the attack's id (a key of the config's `attacks`)")
EPS = _number("eps", "`norm` distance, pixels in [0, 1]",
              "the perturbation budget: radius of the ball around each image in `norm` (for "
              "linf, the most any pixel value may change)")
SOURCE_ROLE = _text("source_role", NAME,
                    "what the attack or comparison starts from: sibling (a published "
                    "compressed model), independent (the same architecture trained from "
                    "another seed), cross-arch (another architecture's full model), whitebox "
                    "(the target itself), defended (a sibling after a defense), the adaptive "
                    "attackers' reversed, extracted and averaged, or none (no source)")
SOURCE_ID = _text("source_id", NAME, "the source within its role: a compression id, "
                                     "`<compression>+<defense>`, `seed<n>`, an architecture "
                                     "(cross-arch) or none")
N_EXAMPLES = _count("n_examples", "images", "images attacked: test images the target "
                                            "classifies correctly, in a seeded order; the "
                                            "same for every source of one target and attack")
QUERY_BUDGET = _count("query_budget", "queries per image",
                      "the most target queries a query attack may spend on one image; null "
                      "for transfer attacks")

# Per (full model, source) pair, as siblings.similarity measures it on fixed test images.
PAIR_SIMILARITY = (
    _number("grad_cosine", COSINE, "mean over the compared images of the cosine between the "
                                   "full model's and the source's input gradients of the "
                                   "logit margin (true class minus the best other)"),
    _number("grad_cosine_median", COSINE, "median over the images of that cosine"),
    _number("grad_cosine_q10", COSINE, "10th percentile over the images of that cosine"),
    _number("grad_cosine_q90", COSINE, "90th percentile over the images of that cosine"),
    _number("agreement", FRACTION, "share of the compared images on which the full model "
                                   "and the source predict the same class"),
    _number("kl", "nats", "mean over the images of KL(full model's softmax || source's "
                          "softmax); 0: identical outputs"),
    _number("cka", "0 to 1", "linear centred kernel alignment of the two models' "
                             "penultimate features; 1: equal up to rotation and scale"),
)
# The per-pair values joined onto every attack row of that (arch, role, source).
SIMILARITY_COLUMNS = [c.name for c in PAIR_SIMILARITY]
# What the config may leave out (similarity.metrics): null columns when it does.
METRIC_COLUMNS = [*SIMILARITY_COLUMNS, "grad_cosine_values"]

SIMILARITY = TableSchema("similarity", 1, (
    "One row per (full model, source) pair an attack uses: how alike the two models are on "
    "the same seeded test images (siblings.similarity). A metric the config's "
    "`similarity.metrics` leaves out is null."), (
    TARGET_ARCH, SOURCE_ROLE, SOURCE_ID,
    _count("n_similarity", "images", "test images the pair is compared on, in a seeded "
                                     "choice (the config's `similarity.n_examples`)"),
    *PAIR_SIMILARITY[:4],
    Column("grad_cosine_values", pa.list_(pa.float64()), f"{COSINE}, per image",
           "the gradient cosine of every compared image, in the seeded image order"),
    *PAIR_SIMILARITY[4:],
    _text("similarity_code_version", HASH, "code fingerprint of the similarity job "
                                           "(siblings.fingerprint)"),
    _text("similarity_device", NAME, "the device the similarity job computed on"),
    DATASET, *STAMP))

MODELS = TableSchema("models", 3, (
    "One row per model the run made or loaded: the full models, their independent twins, "
    "the siblings, the defended siblings and the adaptive attacker's extracted surrogates; "
    "what each is, how accurate, and what it costs as a deployed product."), (
    DATASET,
    _text("arch", NAME, "the model's architecture"),
    _text("role", NAME, "full (the target), independent (the same architecture from another "
                        "seed), sibling, defended or extracted"),
    _text("compression", NAME, "id of the compression that made the model (a key of the "
                               "config's `compressions`), none for full and independent "
                               "models; an extracted surrogate's is that of the sibling it "
                               "copies"),
    _text("compression_family", NAME, "the family of that compression method (e.g. "
                                      "quantization, unstructured pruning), or none"),
    _number("width", "multiplier", "channel width multiplier of the architecture (1: as "
                                   "published)"),
    _count("seed", "seed", "the seed of the stage that made the model (training, "
                           "compressing, defending, distilling)"),
    _count("parameters", "parameters", "parameter count of the stored model"),
    _count("n_correct", "images", "test images the stored model labels right, of `n_test` "
                                  "(not as deployed: see deployed_accuracy)"),
    _number("test_accuracy", PERCENT, "top-1 accuracy of the stored model: 100 * n_correct / "
                                      "n_test"),
    _number("agreement_with_full", PERCENT, "share of the test images labelled as the full "
                                            "model labels them; null for full, independent "
                                            "and extracted models"),
    _number("sparsity", FRACTION, "measured share of exact zeros among the prunable weights; "
                                  "unstructured-pruning siblings only"),
    _number("parameter_reduction", FRACTION, "1 - parameters / the full model's parameters; "
                                             "channel-pruning siblings only"),
    _text("defense", NAME, "id of the defense applied (a key of the config's `defenses`), or "
                           "none; an extracted surrogate's is that of the model it copies"),
    _number("defense_lambda", "penalty weight", "the defense's `lam`, the weight of the "
                                                "gradient-similarity penalty (0: the "
                                                "fine-tuning-only control); defended only"),
    _number("accuracy_cost", POINTS, "test-accuracy points lost against the parent (from the "
                                     "two n_correct): a defended sibling against its sibling, "
                                     "an extracted surrogate against the model it copies; "
                                     "negative: gained"),
    _flag("failed", "a defended sibling that lost more than the defense's `tolerance` "
                    "points, or a surrogate whose calibration accuracy did not come within "
                    "`within` points of its victim's; null for other models"),
    _count("calibration_lost", "images", "calibration images a defended sibling labels right "
                                         "fewer than its sibling: what lam is chosen on; "
                                         "defended only"),
    _count("n_calibration", "images", "the calibration images it was measured on; defended "
                                      "only"),
    _number("calibration_cost", POINTS, "100 * calibration_lost / n_calibration; defended "
                                        "only"),
    _text("defense_variant", NAME, "the penalty a defended sibling was trained with (the "
                                   "defense's `variant`, by default form/points), control "
                                   "for a lam = 0 control; defended only"),
    _flag("defense_selected", "the lam the selection rule picks for this sibling and "
                              "variant: the largest whose calibration_cost is within the "
                              "defense's tolerance (compared on the counts); null for lam = 0 "
                              "and other models"),
    _number("similarity_before", COSINE, "mean input-gradient cosine with the full model on "
                                         "500 held-out calibration images before the "
                                         "defense; defended only"),
    _number("similarity_after", COSINE, "the same after the defense; defended only"),
    _count("size_bytes", "bytes", "size of what a device loads: the deployed artifact's "
                                  "weights file; null for extracted surrogates"),
    _number("latency_ms", "ms", "median wall time of one batch-1 forward pass of the deployed "
                                "model on the CPU, after a warm-up; null where no CPU runtime "
                                "exists; varies run to run"),
    _text("runtime", TEXT, "how the model deploys, e.g. float32, int8 (PyTorch onednn), "
                           "float32 (sparse storage), or none (why no CPU runtime exists)"),
    _number("deployed_accuracy", PERCENT, "top-1 test accuracy of the deployed artifact; null "
                                          "where it has no CPU runtime"),
    _number("deployed_agreement", PERCENT, "share of the test images on which the deployed "
                                           "artifact predicts what the stored model predicts; "
                                           "null for full models and without a runtime"),
    _text("measured", "JSON object", "the making stage's own readings (e.g. sparsity, "
                                     "calibration images, the defense's training history)"),
    _count("n_test", "images", "test images the accuracies and agreements are measured on"),
    _text("code_version", HASH, "code fingerprint of the job that made the model "
                                "(siblings.fingerprint)"),
    _text("device", NAME, "the device that job computed on"),
    *STAMP))


def _of_source(model_column: str) -> Column:
    """A sibling's own measurement as copied onto the attack rows it is the source of."""
    c = MODELS.column(model_column)
    return Column(f"source_{model_column}", c.type, c.unit,
                  f"the source sibling's `{model_column}` in models.parquet; sibling rows only")


# Sibling measurements copied onto every attack row whose source is that sibling.
SOURCE_COLUMNS = {name: f"source_{name}" for name in (
    "agreement_with_full", "parameters", "size_bytes", "latency_ms", "runtime",
    "deployed_agreement")}

BENCHMARK = TableSchema("benchmark", 2, (
    "One row per (target, attack, source, eps): how often the attack from that source fooled "
    "the full model, with what it is compared against on the same row: the independent "
    "source (amplification), the no-prior baseline and the independent prior (query "
    "reduction and amplification), the pair's similarity (similarity.parquet), the "
    "defense's control and undefended sibling, and the source sibling's product "
    "measurements (models.parquet)."), (
    DATASET, TARGET_ARCH,
    _text("compression", NAME, "the source's compression id, or none (no compressed source)"),
    _text("compression_family", NAME, "the family of the source's compression method, or none"),
    _text("defense", NAME, "the source's defense id, or none"),
    ATTACK,
    _text("attack_method", NAME, "the registered attack method the attack runs (pgd, mifgsm, "
                                 "prgf, rgf, square, ...)"),
    _text("attack_kind", NAME, "transfer (crafted on the source, scored on the target) or "
                               "query (the target as a black box, the source as a prior)"),
    SOURCE_ROLE, SOURCE_ID,
    _text("source_arch", NAME, "the source model's architecture, or none"),
    _text("norm", NAME, "the norm of the perturbation budget: linf or l2"),
    _flag("targeted", "whether the attack aims at a seeded random other class instead of any "
                      "wrong class"),
    EPS,
    _count("steps", "iterations", "gradient steps a transfer attack takes on its source; null "
                                  "for query attacks"),
    QUERY_BUDGET, N_EXAMPLES,
    _count("n_success", "images", "images on which the target was fooled (misclassified; "
                                  "targeted: labelled the target class)"),
    _number("success_rate", FRACTION, "n_success / n_examples"),
    _number("success_ci_low", FRACTION, "lower end of the Wilson score 95% interval of "
                                        "success_rate"),
    _number("success_ci_high", FRACTION, "upper end of the Wilson score 95% interval of "
                                         "success_rate"),
    Column("image_success", pa.list_(pa.bool_()), f"{FLAG}, per image",
           "whether the target was fooled, per image, in the attack-set order"),
    _number("source_success_rate", FRACTION, "transfer attacks: share of the images whose "
                                             "adversarial example also fools the source it "
                                             "was crafted on; null for query attacks"),
    Column("queries_at_success", pa.list_(pa.float64()), "queries, per image",
           "target queries each image had taken when it was fooled, in the attack-set "
           "order; null for an image never fooled; a transfer attack counts 1"),
    _number("mean_queries_success", "queries", "mean of queries_at_success over the fooled "
                                               "images only, so biased low (failures spent "
                                               "the whole budget); null if none was fooled"),
    _number("median_queries_success", "queries", "median of the same"),
    _number("prior_lambda_one", FRACTION, "P-RGF and RGF: share of the (image, iteration) "
                                          "steps whose prior weight lambda was 1, i.e. that "
                                          "followed the prior alone (0 without a prior); null "
                                          "for other attacks"),
    _number("amplification", TIMES, "success_rate / the independent source's success_rate "
                                    "(same target, attack and eps); where the independent "
                                    "source fooled no image, the count this source fooled "
                                    "(see amplification_bound); sibling rows only"),
    *_paired_interval("amplification", TIMES),
    _flag("amplification_bound", "true where the independent source fooled no image, so "
                                 "amplification is a lower bound ('> x')"),
    _text("baseline_attack", NAME, "query attacks with a no-prior baseline (P-RGF: RGF): that "
                                   "attack's id; null otherwise"),
    _number("baseline_success_rate", FRACTION, "the baseline's final success_rate: the share "
                                               "of images query_reduction is read at"),
    _number("baseline_queries_needed", "queries", "queries the baseline needed to fool that "
                                                  "share of the images"),
    _number("queries_needed", "queries", "queries this row's attack needed to fool that "
                                         "share; null where it never did"),
    _number("query_reduction", TIMES, "baseline_queries_needed / queries_needed: how many "
                                      "times fewer queries than the no-prior baseline, an "
                                      "attack that never got there read at the budget (see "
                                      "query_reduction_bound); null without a baseline"),
    *_paired_interval("query_reduction", TIMES),
    _text("query_reduction_bound", "'', '>' or '<'",
          "'>' where the baseline never got there (query_reduction is a lower bound), '<' "
          "where this attack never did (an upper bound), '' where it is exact"),
    _number("query_amplification", TIMES, "the same factor against the same attack with the "
                                          "independent model as prior, read at the share "
                                          "of images that one finally fooled; prior-guided "
                                          "rows other than the independent one"),
    *_paired_interval("query_amplification", TIMES),
    _text("query_amplification_bound", "'', '>' or '<'",
          "as query_reduction_bound, for query_amplification"),
    *PAIR_SIMILARITY,
    _number("defense_lambda", "penalty weight", "the defense's `lam` (0: the control); "
                                                "defended rows only: those whose source is a "
                                                "defended sibling or made from one"),
    _text("defense_form", NAME, "how the defense turns the gradient cosine into its penalty "
                                "(cosine, abs, squared); defended rows only"),
    _text("defense_control", NAME, "id of the lam = 0 control defense this one is judged "
                                   "against; null for the control itself"),
    _flag("defense_failed", "whether the defended sibling lost more than the defense's "
                            "tolerance in accuracy; defended rows only"),
    _text("defense_variant", NAME, "the defended sibling's penalty (models.defense_variant); "
                                   "defended rows only"),
    _flag("defense_selected", "whether the selection rule picks this lam for its sibling "
                              "and variant (models.defense_selected); defended rows only"),
    _number("defense_calibration_cost", POINTS, "calibration-split accuracy points the "
                                                "defended sibling lost against the undefended "
                                                "one (what lam is chosen on); defended rows "
                                                "only"),
    _number("defense_accuracy_cost", POINTS, "test-accuracy points the defended sibling lost "
                                             "against the undefended one; defended rows only"),
    _number("control_success_rate", FRACTION, "success_rate of the same attack at the same "
                                              "eps from the defense's control (role "
                                              "defended, defense defense_control)"),
    _number("control_query_reduction", TIMES, "query_reduction of that control row"),
    _number("control_clean_acc", PERCENT, "the control defended sibling's test accuracy"),
    _number("undefended_success_rate", FRACTION, "success_rate of the same attack at the same "
                                                 "eps from the undefended sibling"),
    _number("undefended_query_reduction", TIMES, "query_reduction of that undefended row"),
    _number("control_success_ratio", TIMES, "success_rate / control_success_rate on the same "
                                            "images; where the control fooled none, the count "
                                            "this row fooled (a lower bound, not flagged)"),
    *_paired_interval("control_success_ratio", TIMES),
    _number("target_clean_acc", PERCENT, "top-1 test accuracy of the target"),
    _number("source_clean_acc", PERCENT, "top-1 test accuracy of the source model as stored; "
                                         "null without a source"),
    *(_of_source(name) for name in SOURCE_COLUMNS),
    _count("seed", "seed", "the attack's seed: its image set, random starts and directions"),
    _text("job_config_hash", HASH, "fingerprint of what the row depends on in the config: "
                                   "the attack's entry, the role and the source id"),
    _text("code_version", HASH, "code fingerprint of the attack job (siblings.fingerprint)"),
    _text("device", NAME, "the device the attack job computed on"),
    *STAMP,
    _text("git_commit", "git commit", "the checkout's commit when the aggregate ran (12 hex, "
                                      "+dirty with local edits; unknown outside git)"),
    _text("package_versions", TEXT, "Python list of (package, version) pairs of the tracked "
                                    "packages (torch, numpy, pandas, ...) when the aggregate "
                                    "ran"),
))

# One query reading (query_readings); the stage stamps the run on them.
READING_COLUMNS = (
    DATASET, TARGET_ARCH, ATTACK, EPS, SOURCE_ROLE, SOURCE_ID,
    _text("reference", NAME, "what the attack is compared with: baseline (its no-prior "
                             "baseline, RGF for P-RGF) or independent (the same attack with "
                             "the independent model as prior)"),
    _text("reference_attack", NAME, "the reference row's attack id"),
    _text("reference_source", NAME, "the reference row's source id (none: no prior)"),
    _number("reference_success_rate", FRACTION, "the reference's final success rate"),
    QUERY_BUDGET, N_EXAMPLES,
    _text("statistic", NAME, "query_factor (how many times fewer queries than the reference "
                             "this attack needed to fool a share of the images) or "
                             "curve_gain (the area between the two success-vs-queries curves)"),
    _text("level", NAME, "where query_factor is read: final (the share the reference "
                         "finally fooled), 25% or 50% of the images; area for curve_gain"),
    _number("value", "ratio (x) for query_factor, percentage points for curve_gain",
            "query_factor: reference queries needed / this attack's, an attack that never got "
            "there read at the budget (see bound), null at level 0 or where neither got "
            "there; curve_gain: mean over images of (budget - queries at success) / budget, "
            "this attack minus the reference, in points"),
    *_paired_interval("value", "as value", prefix=""),
    _text("bound", "'', '>' or '<'", "'>' where the reference never got there (value is a "
                                     "lower bound), '<' where this attack never did (an "
                                     "upper bound), '' otherwise"),
    _number("queries_needed", "queries", "queries this attack needed to reach the level; null "
                                         "where it never did, and for curve_gain"),
    _number("reference_queries_needed", "queries", "the same for the reference"))
QUERIES = TableSchema("queries", 1, (
    "Every query attack's readings against each of its references, in long form: per "
    "(target, attack, source, eps, reference), the query factor at several levels and the "
    "curve gain, each with its paired interval; benchmark.parquet carries the headline "
    "factor (level final)."), (*READING_COLUMNS, *STAMP))

SUPPORT = TableSchema("support", 1, (
    "The support matrix the planner decided before any job ran (siblings.support): per "
    "architecture, every capability, compression and defense of the config and whether it "
    "applies. An unsupported compression or defense is left out of the plan, never run as "
    "a job that fails."), (
    _text("arch", NAME, "the architecture"),
    _text("kind", NAME, "capability, compression or defense"),
    _text("component", NAME, "the capability's name, or the compression's or defense's id"),
    _text("reason", TEXT, "why it does not apply; null where it does"),
    _flag("supported", "whether the architecture has the capability, or meets everything "
                       "the compression or defense needs"),
    DATASET, *STAMP))


def with_success_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """Wilson 95% interval of every row's success rate, from its own image count."""
    low, high = wilson(df["n_success"].to_numpy(), df["n_examples"].to_numpy())
    return df.assign(success_ci_low=low, success_ci_high=high)


def rate_ratio(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Success-rate ratio of paired per-image success matrices ``a`` over ``b`` (rows:
    resamples or one observed set, columns: images), and whether it is a lower bound: where
    ``b`` fooled no image it counts as one ("> x"), never inf; NaN where neither did."""
    ka, kb = a.sum(axis=-1).astype(float), b.sum(axis=-1).astype(float)
    bound = kb == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound, np.where(ka == 0, np.nan, ka), ka / kb)
    return ratio, bound & (ka > 0)


def _counterparts(rows: pd.DataFrame, candidates: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Index of the row of ``candidates`` with the same ``keys`` as each of ``rows``
    (NaN: none)."""
    ref = candidates.reset_index().drop_duplicates(keys).set_index(keys)["index"]
    return pd.Series(rows.set_index(keys).index.map(lambda k: ref.get(k, np.nan)),
                     index=rows.index, dtype=float)


def with_amplification(df: pd.DataFrame) -> pd.DataFrame:
    """Sibling-source success over independent-source success (same arch, attack, eps), with
    a paired bootstrap 95% interval: the two attacks ran on the same images, so both are
    resampled with the same image draws. A lower bound (``amplification_bound``) where the
    independent model fooled none; NaN on rows that are not sibling rows."""
    cols = {"amplification": np.nan, "amplification_ci_low": np.nan,
            "amplification_ci_high": np.nan, "amplification_bound": False}
    out = df.assign(**cols)
    ref = _counterparts(df, df[df.source_role == "independent"],
                        ["dataset", "arch", "attack", "eps"])
    for i in df.index[(df.source_role == "sibling") & ref.notna()]:
        a = np.asarray(df.at[i, "image_success"], dtype=bool)
        b = np.asarray(df.at[int(ref[i]), "image_success"], dtype=bool)
        if len(a) != len(b):
            raise ValueError(f"aggregate: {df.at[i, 'source_id']} and the independent source "
                             f"were attacked on different images ({len(a)} vs {len(b)})")
        (value,), (bound,) = rate_ratio(a[None], b[None])
        idx = resamples(len(a))
        low, high = percentile_interval(rate_ratio(a[idx], b[idx])[0])
        out.loc[i, list(cols)] = [value, low, high, bool(bound)]
    return out.astype({"amplification_bound": bool})


def _queries(row: pd.Series) -> np.ndarray:
    """Per-image queries at success, inf for an image never fooled within the budget."""
    q = np.asarray(row.queries_at_success, dtype=float)
    return np.where(np.isnan(q), np.inf, q)


def queries_to_reach(queries: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Per row of ``queries`` (images in columns, inf = never fooled): the fewest queries
    by which a fraction ``level`` of the images had been fooled; inf if never, 0 at 0."""
    queries = np.atleast_2d(queries)
    n = queries.shape[1]
    k = np.ceil(np.broadcast_to(level, len(queries)) * n - 1e-9).astype(int)
    ordered = np.sort(queries, axis=1)
    picked = ordered[np.arange(len(queries)), np.clip(k - 1, 0, n - 1)]
    return np.where(k == 0, 0.0, picked)


def query_factor(ref: np.ndarray, this: np.ndarray, level: np.ndarray | None,
                 budget: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How many times fewer queries ``this`` needed than ``ref`` to fool a fraction
    ``level`` of the images (None: the reference's own final success rate), per row of
    paired per-image query matrices. An attack that never got there is read at the budget,
    so the factor is a bound (``>`` if the reference never got there, ``<`` if this one
    never did); NaN at level 0 or when neither got there. Also returns both queries needed
    (NaN when not reached)."""
    ref, this = np.atleast_2d(ref), np.atleast_2d(this)
    level = np.isfinite(ref).mean(axis=1) if level is None else np.full(len(ref), level)
    ref_needed, needed = queries_to_reach(ref, level), queries_to_reach(this, level)
    undefined = (level == 0) | (np.isinf(ref_needed) & np.isinf(needed))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(undefined, np.nan,
                          np.minimum(ref_needed, budget) / np.minimum(needed, budget))
    bound = np.where(undefined, "", np.where(np.isinf(ref_needed), ">",
                                             np.where(np.isinf(needed), "<", "")))
    finite = lambda q: np.where(np.isinf(q), np.nan, q)  # noqa: E731
    return factor, bound, finite(ref_needed), finite(needed)


def curve_gain(ref: np.ndarray, this: np.ndarray, budget: float) -> np.ndarray:
    """Area between the two success-vs-queries curves over the whole budget, divided by the
    budget: the mean over images of (budget - queries at success) / budget, this minus the
    reference, in points of success. One number per curve pair that no single image sets."""
    area = lambda q: np.where(np.isinf(q), 0.0, (budget - q) / budget).mean(axis=1)  # noqa: E731
    return 100 * (area(np.atleast_2d(this)) - area(np.atleast_2d(ref)))


# Where each query reading is taken: a fixed share of the images, or the reference's final
# success rate (None: the headline level, unaffected by how far past it the attack went).
QUERY_LEVELS = {"final": None, "25%": 0.25, "50%": 0.5}
QUERY_REFERENCES = ("baseline", "independent")


def query_readings(df: pd.DataFrame, attacks: dict) -> pd.DataFrame:
    """Every query-attack row against each of its references, in long form: the attack's
    no-prior ``baseline`` (RGF for P-RGF) and, for prior-guided rows, the same attack with
    the independent model as prior (the control). Per reference: the query factor at each
    of QUERY_LEVELS and the curve gain, each with a paired bootstrap 95% interval."""
    keys = ["dataset", "arch", "eps"]
    out = []
    for attack_id, params in attacks.items():
        rows = df[df.attack == attack_id]
        if rows.empty or (rows.attack_kind != "query").any():
            continue
        refs = {"independent": _counterparts(rows, rows[rows.source_role == "independent"],
                                             [*keys, "attack"])}
        if params.get("baseline") is not None:
            refs["baseline"] = _counterparts(rows, df[df.attack == params["baseline"]], keys)
        for reference, ref_index in refs.items():
            for i in rows.index[ref_index.notna()]:
                row, ref = df.loc[i], df.loc[int(ref_index[i])]
                if reference == "independent" and row.source_role == "independent":
                    continue
                out.extend(_readings(row, ref, reference))
    return pd.DataFrame(out) if out else pd.DataFrame(columns=[c.name for c in READING_COLUMNS])


def _readings(row: pd.Series, ref: pd.Series, reference: str) -> list[dict]:
    this, base, budget = _queries(row), _queries(ref), float(row.query_budget)
    if len(this) != len(base):
        raise ValueError(f"aggregate: {row.attack} {row.source_id} and its {reference} "
                         f"reference were attacked on different images")
    idx = resamples(len(this))
    common = {"dataset": row.dataset, "arch": row.arch, "attack": row.attack, "eps": row.eps,
              "source_role": row.source_role, "source_id": row.source_id,
              "reference": reference, "reference_attack": ref.attack,
              "reference_source": ref.source_id, "reference_success_rate": ref.success_rate,
              "query_budget": int(budget),
              "n_examples": len(this)}
    found = []
    for name, level in QUERY_LEVELS.items():
        (value,), (bound,), (ref_needed,), (needed,) = query_factor(base, this, level, budget)
        low, high = percentile_interval(query_factor(base[idx], this[idx], level, budget)[0])
        found.append({**common, "statistic": "query_factor", "level": name,
                      "value": value, "ci_low": low, "ci_high": high, "bound": bound,
                      "queries_needed": needed, "reference_queries_needed": ref_needed})
    low, high = percentile_interval(curve_gain(base[idx], this[idx], budget))
    found.append({**common, "statistic": "curve_gain", "level": "area", "bound": "",
                  "value": float(curve_gain(base, this, budget)[0]), "ci_low": low,
                  "ci_high": high, "queries_needed": np.nan, "reference_queries_needed": np.nan})
    return found


def with_query_columns(df: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    """The headline readings (factor at the reference's final success rate) on each row:
    ``query_reduction`` against the no-prior baseline, ``query_amplification`` against the
    independent prior, each with its interval and bound, and the queries needed."""
    keys = ["dataset", "arch", "attack", "eps", "source_role", "source_id"]
    out = df
    head = readings[(readings.statistic == "query_factor") & (readings.level == "final")]
    for reference, name in (("baseline", "query_reduction"), ("independent", "query_amplification")):
        part = head[head.reference == reference].set_index(keys)
        picked = part.reindex(pd.MultiIndex.from_frame(df[keys]))
        out = out.assign(**{name: picked.value.to_numpy(dtype=float),
                            f"{name}_ci_low": picked.ci_low.to_numpy(dtype=float),
                            f"{name}_ci_high": picked.ci_high.to_numpy(dtype=float),
                            f"{name}_bound": picked.bound.fillna("").to_numpy(dtype=object)})
        if reference == "baseline":
            out = out.assign(baseline_attack=picked.reference_attack.to_numpy(dtype=object),
                             baseline_success_rate=picked.reference_success_rate.to_numpy(dtype=float),
                             baseline_queries_needed=picked.reference_queries_needed.to_numpy(dtype=float),
                             queries_needed=picked.queries_needed.to_numpy(dtype=float))
    return out


def similarity_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The per-architecture similarity tables as one; a metric the config left out is a
    null column, so every run's table has the declared columns."""
    sim = pd.concat(tables, ignore_index=True)
    return sim.assign(**{c: None for c in METRIC_COLUMNS if c not in sim})


def with_similarity(df: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    keys = ["arch", "source_role", "source_id"]
    sim = sim.reindex(columns=[*keys, *SIMILARITY_COLUMNS])
    return df.merge(sim, on=keys, how="left")


def with_defense(df: pd.DataFrame, models: pd.DataFrame, defenses: dict) -> pd.DataFrame:
    """On rows whose source is a defended sibling or derived from one: the defense's lam,
    form and control, whether it failed its accuracy tolerance, its accuracy cost against
    the undefended sibling, and the same attack's results (same eps) from its lam = 0
    control (role ``defended``) and from the undefended sibling: the comparisons the
    defense is judged by. ``control_success_ratio``: this row's success over the control's,
    with a paired bootstrap 95% interval (both attacked the same images)."""
    cols = ["defense_lambda", "defense_form", "defense_control", "defense_failed",
            "defense_variant", "defense_selected", "defense_calibration_cost",
            "defense_accuracy_cost", "control_success_rate", "control_query_reduction",
            "control_clean_acc", "undefended_success_rate", "undefended_query_reduction",
            "control_success_ratio", "control_success_ratio_ci_low",
            "control_success_ratio_ci_high"]
    out = df.assign(**{c: None for c in cols})
    defended = models[models.role == "defended"].set_index(["arch", "compression", "defense"])
    by_source = df.set_index(["dataset", "arch", "attack", "eps", "source_role", "compression",
                              "defense"])
    measures = ["success_rate", "query_reduction", "source_clean_acc", "image_success"]

    def lookup(row: pd.Series, role: str, defense: str | None) -> list:
        key = (row.dataset, row.arch, row.attack, row.eps, role, row.compression, defense)
        return by_source.loc[key, measures].tolist() if key in by_source.index else [np.nan] * 4

    for i, row in df[df.defense != "none"].iterrows():
        params = defenses[row.defense]
        model = defended.loc[(row.arch, row.compression, row.defense)]
        control = params.get("control") if params["lam"] > 0 else None
        ctrl = lookup(row, "defended", control)
        undefended = lookup(row, "sibling", "none")
        out.loc[i, cols] = [float(params["lam"]), params["form"], control, bool(model.failed),
                            model.defense_variant, model.defense_selected,
                            float(model.calibration_cost), float(model.accuracy_cost),
                            *ctrl[:3], *undefended[:2],
                            *_success_ratio(row.image_success, ctrl[3])]
    return out.astype({c: float for c in cols if c not in (
        "defense_form", "defense_control", "defense_failed", "defense_variant",
        "defense_selected")})


def _success_ratio(this: list[bool], reference: list[bool] | float) -> list[float]:
    """Success of ``this`` over ``reference`` on the same images, with its paired bootstrap
    interval; NaN where there is no reference or neither succeeded."""
    if not isinstance(reference, (list, np.ndarray)):
        return [np.nan] * 3
    a, b = np.asarray(this, dtype=bool), np.asarray(reference, dtype=bool)
    idx = resamples(len(a))
    return [float(rate_ratio(a[None], b[None])[0][0]),
            *percentile_interval(rate_ratio(a[idx], b[idx])[0])]


def with_sibling_measurements(df: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Joins each sibling's product measurements onto the attack rows it is the source of."""
    sib = models[models.role == "sibling"][["arch", "compression", *SOURCE_COLUMNS]]
    out = df.merge(sib.rename(columns=SOURCE_COLUMNS), on=["arch", "compression"], how="left")
    out.loc[out.source_role != "sibling", list(SOURCE_COLUMNS.values())] = None
    return out


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def _variant(params: dict) -> str:
    return variant_name(params) if params["lam"] > 0 else "control"


def with_selection(models: pd.DataFrame, defenses: dict) -> pd.DataFrame:
    """``defense_selected`` on the defended rows with lam > 0: per dataset, architecture,
    sibling and variant, whether :func:`siblings.defend.selected_lam` picks this row's lam
    from the calibration costs of that variant's lams."""
    out = models.assign(defense_selected=None)
    rows = out[(out.role == "defended") & (out.defense_lambda > 0)]
    for _, group in rows.groupby(["dataset", "arch", "compression", "defense_variant"]):
        tolerance = defenses[group.defense.iloc[0]]["tolerance"]
        chosen = selected_lam({lam: (int(lost), int(n)) for lam, lost, n in zip(
            group.defense_lambda, group.calibration_lost, group.n_calibration)}, tolerance)
        out.loc[group.index, "defense_selected"] = group.defense_lambda == chosen
    return out


def _calibration(card: ModelCard) -> dict:
    """A defended sibling's calibration-split loss, as counts and in points."""
    if card.kind != "defended":
        return {"calibration_lost": None, "n_calibration": None, "calibration_cost": np.nan}
    lost, n = card.measured["calibration_lost"], card.measured["calibration_images"]
    return {"calibration_lost": lost, "n_calibration": n, "calibration_cost": percent(lost, n)}


def model_row(card: ModelCard, role: str, dataset: str) -> dict:
    """One row of ``models.parquet`` from a model card."""
    measured, product = card.measured, card.product or {}
    return {**{k: product.get(k) for k in
               ("size_bytes", "latency_ms", "runtime", "deployed_accuracy", "deployed_agreement")},
        "dataset": dataset, "arch": card.spec.arch, "role": role,
        "compression": card.compression_id or "none",
        "compression_family": card.family or "none",
        "width": float(card.spec.width), "seed": card.seed,
        "parameters": card.parameters, "n_correct": card.n_correct,
        "test_accuracy": card.test_accuracy,
        "agreement_with_full": _or_nan(card.agreement_with_full),
        "sparsity": measured.get("sparsity", np.nan),
        "parameter_reduction": measured.get("parameter_reduction", np.nan),
        "defense": card.defense_id or "none",
        "defense_lambda": (card.defense or {}).get("lam", np.nan),
        "accuracy_cost": _or_nan(card.accuracy_cost), "failed": card.failed,
        **_calibration(card),
        "defense_variant": _variant(card.defense) if card.kind == "defended" else None,
        "similarity_before": measured.get("similarity_before", np.nan),
        "similarity_after": measured.get("similarity_after", np.nan),
        "measured": json.dumps(measured, sort_keys=True),
        "n_test": card.n_test, "code_version": card.code_version, "device": card.device,
    }

