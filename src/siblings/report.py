"""The report's figures and ``summary.md``, drawn only from the aggregated Parquet files."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from siblings.artifacts import atomic_path  # noqa: E402
from siblings.claims import (TARGET, best_defenses, change, claims_markdown,  # noqa: E402
                             defense_outcomes, ratio, smallest_eps)
from siblings.correlate import correlation_markdown  # noqa: E402
from siblings.intervals import wilson  # noqa: E402
from siblings.roles import ADAPTIVE_ROLES, DEFENDED_ROLES  # noqa: E402

BASELINE_ROLES = ("independent", "cross-arch", "whitebox")


def _save(figure: plt.Figure, out: str | Path) -> None:
    """Writes a figure as PNG (for the report) and, beside it, PDF (for papers), each
    atomically: a half-written file never replaces a good one."""
    for path, kind in ((Path(out), "png"), (Path(out).with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=150, bbox_inches="tight", format=kind)
    plt.close(figure)


def source_label(row: pd.Series) -> str:
    """Legend label of an attack's source: the role, plus the sibling (and defense) it is."""
    if row.source_role in ("sibling", *DEFENDED_ROLES):
        return f"{row.source_role} {row.source_id}"
    return row.source_role


def _blank(out: str | Path, why: str) -> None:
    """Every figure is a workflow output: when a run has nothing to draw, say why."""
    figure = plt.figure(figsize=(6, 1))
    figure.text(0.5, 0.5, why, ha="center")
    _save(figure, out)


def _palette(labels: pd.Series) -> dict[str, tuple]:
    """One colour-blind-safe colour per label, in sorted order, so a compression family or
    a source keeps its colour in every figure of a run."""
    names = sorted(labels.dropna().unique())
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def transfer_figure(df: pd.DataFrame, out: str | Path) -> None:
    """Transfer success vs eps, one panel per architecture (and attack), one line per
    source, each point with its Wilson 95% interval."""
    data = df.assign(source=df.apply(source_label, axis=1), success=100 * df["success_rate"],
                     low=100 * df["success_ci_low"], high=100 * df["success_ci_high"])
    palette = _palette(data.source)
    grid = sns.relplot(data=data, x="eps", y="success", hue="source", style="source",
                       col="arch", row="attack", kind="line", markers=True, dashes=False,
                       palette=palette, height=3.0, aspect=1.0, facet_kws={"sharey": True})
    for (attack, arch), ax in grid.axes_dict.items():
        for source, d in data[(data.attack == attack) & (data.arch == arch)].groupby("source"):
            ax.errorbar(d.eps, d.success, yerr=[d.success - d.low, d.high - d.success],
                        fmt="none", ecolor=palette[source], elinewidth=0.8, capsize=2)
    grid.set_axis_labels("eps (L-inf, pixels in [0, 1])", "transfer success on target (%)")
    grid.set_titles("{col_name} / {row_name}")
    grid.figure.suptitle(f"Transfer success against the full model ({df.dataset.iloc[0]})",
                         y=1.02)
    _save(grid.figure, out)


def query_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Success rate (%) against queries spent, per query-attack row: the share of images
    fooled within q queries. Failures never count, so each curve ends at its final success
    rate at the budget (the censoring point)."""
    rows = []
    for _, r in df[df.attack_kind == "query"].iterrows():
        done = np.sort(np.asarray(r.queries_at_success, dtype=float))
        done = done[~np.isnan(done)]
        steps = np.unique(np.concatenate([[1.0], done, [float(r.query_budget)]]))
        fooled = np.searchsorted(done, steps, side="right")
        n = len(r.queries_at_success)
        low, high = wilson(fooled, np.full(len(fooled), n))
        rows += [{"arch": r.arch, "eps": r.eps, "queries": q,
                  "source": f"{r.attack} / {source_label(r)}", "success": 100 * k / n,
                  "low": 100 * lo, "high": 100 * hi}
                 for q, k, lo, hi in zip(steps, fooled, low, high)]
    return pd.DataFrame(rows)


def query_figure(df: pd.DataFrame, out: str | Path) -> None:
    """Success vs queries for every query attack and prior, one panel per architecture,
    each curve with its pointwise Wilson 95% band."""
    data = query_curves(df)
    if data.empty:
        _blank(out, "no query attacks in this run's config")
        return
    palette = _palette(data.source)
    grid = sns.relplot(data=data, x="queries", y="success", hue="source", col="arch",
                       row="eps", kind="line", drawstyle="steps-post", palette=palette,
                       hue_order=list(palette), height=3.0, aspect=1.1,
                       facet_kws={"sharey": True, "sharex": True})
    for (eps, arch), ax in grid.axes_dict.items():
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        for source, d in data[(data.eps == eps) & (data.arch == arch)].groupby("source"):
            ax.fill_between(d.queries, d.low, d.high, step="post", color=palette[source],
                            alpha=0.12, linewidth=0)
    grid.set_axis_labels("queries to the target (log)", "images fooled (%)")
    grid.set_titles("{col_name}, eps {row_name}")
    grid.figure.suptitle("Query attacks: success within q queries (curves end at the budget)",
                         y=1.02)
    _save(grid.figure, out)


def efficiency_figure(models: pd.DataFrame, out: str | Path) -> None:
    """Accuracy vs deployed size: one panel per architecture, each sibling with the Wilson
    95% interval of its test accuracy, the full model as a black star; the efficiency side
    of the trade-off."""
    data = models[models.role.isin(["full", "sibling"])]
    low, high = wilson(data.n_correct, data.n_test)
    data = data.assign(size_kib=data.size_bytes / 1024, low=100 * low, high=100 * high)
    siblings, full = data[data.role == "sibling"], data[data.role == "full"]
    style, archs = SiblingStyle.of(siblings), sorted(data.arch.unique())
    figure, axes = plt.subplots(1, len(archs), squeeze=False, figsize=(3.3 * len(archs), 3.0))
    for ax, arch in zip(axes[0], archs):
        for r in siblings[siblings.arch == arch].itertuples():
            style.point(ax, r.size_kib, r.test_accuracy, r.low, r.high, r.compression,
                        r.compression_family)
        f = full[full.arch == arch]
        ax.errorbar(f.size_kib, f.test_accuracy, yerr=[f.test_accuracy - f.low,
                                                       f.high - f.test_accuracy],
                    fmt="*", color="black", markersize=10, capsize=2, label="full model")
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        ax.set_title(arch, fontsize=9)
        ax.set_xlabel("size on disk (KiB, log)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("test accuracy (%)", fontsize=8)
    _figure_legend(figure, axes)
    figure.suptitle("Siblings as products: accuracy vs size (Wilson 95% intervals on the "
                    "test split)", y=1.12, fontsize=10)
    figure.tight_layout()
    _save(figure, out)


# The frontier's x axes: a column of the sibling rows, its label, whether it is log-scaled
# (sizes span orders of magnitude; latencies of one model's siblings do not).
FRONTIER_AXES = {"size_kib": ("size on disk (KiB, log)", True),
                 "latency": ("latency, batch 1 (ms)", False)}
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")  # 300 and 1000, not 3x10^2 and 10^3


def _log_axis(axis: matplotlib.axis.Axis) -> None:
    """A log axis labelled at 1-2-5 steps in plain numbers."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(PLAIN)
    axis.set_minor_formatter(NullFormatter())


@dataclass(frozen=True)
class SiblingStyle:
    """How a sibling is drawn in every figure that plots siblings as points: colour by
    compression family (colour-blind-safe), marker by sibling, so no text labels collide."""

    palette: dict[str, tuple]
    marker: dict[str, str]

    MARKERS = "osD^vPXhp<>"

    @classmethod
    def of(cls, rows: pd.DataFrame) -> SiblingStyle:
        names = sorted(rows.compression.unique())
        return cls(_palette(rows.compression_family),
                   {c: cls.MARKERS[k % len(cls.MARKERS)] for k, c in enumerate(names)})

    def point(self, ax: plt.Axes, x: float, y: float, low: float, high: float,
              compression: str, family: str) -> None:
        ax.errorbar(x, y, yerr=[[max(y - low, 0.0)], [max(high - y, 0.0)]],
                    fmt=self.marker[compression], color=self.palette[family],
                    label=f"{compression} ({family})", elinewidth=0.8, capsize=2,
                    markersize=6, alpha=0.9)


def _figure_legend(figure: plt.Figure, axes: np.ndarray) -> None:
    """One legend above all panels, each label once."""
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    figure.legend(handles.values(), handles.keys(), loc="upper center",
                  ncol=min(len(handles), 5), fontsize=7, bbox_to_anchor=(0.5, 1.0),
                  frameon=False)


def frontier_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each sibling at each transfer attack's smallest eps: what it saves (size, latency)
    and what it costs (amplification, with its interval). An amplification of 0 (the
    sibling fooled nothing) has no place on a log axis and is left out."""
    rows = _smallest_eps(df)
    rows = rows[(rows.source_role == "sibling") & (rows.amplification > 0)]
    return rows.assign(size_kib=rows.source_size_bytes / 1024, latency=rows.source_latency_ms)


def frontier_figure(df: pd.DataFrame, models: pd.DataFrame, out: str | Path) -> None:
    """The security-efficiency frontier: per architecture (columns), each sibling's size on
    disk and its latency (a row each, per transfer attack) against its transfer
    amplification at the attack's smallest eps, with the bootstrap 95% interval; the full
    model's size and latency dotted, no amplification (1x) dashed."""
    rows = frontier_rows(df)
    if rows.empty:
        _blank(out, "no sibling with a transfer amplification in this run")
        return
    full = models[models.role == "full"].set_index("arch")
    full_x = {"size_kib": full.size_bytes / 1024, "latency": full.latency_ms}
    archs, style = sorted(rows.arch.unique()), SiblingStyle.of(rows)
    panels = list(itertools.product(sorted(rows.attack.unique()), FRONTIER_AXES.items()))
    figure, axes = plt.subplots(len(panels), len(archs), squeeze=False, sharey=True,
                                figsize=(3.3 * len(archs), 2.9 * len(panels)))
    for (i, (attack, (x, (label, log)))), (j, arch) in itertools.product(
            enumerate(panels), enumerate(archs)):
        ax = axes[i][j]
        d = rows[(rows.arch == arch) & (rows.attack == attack)].dropna(subset=[x])
        for r in d.itertuples():
            style.point(ax, getattr(r, x), r.amplification, r.amplification_ci_low,
                        r.amplification_ci_high, r.compression, r.compression_family)
        if arch in full_x[x].index and pd.notna(full_x[x][arch]):
            ax.axvline(full_x[x][arch], color="black", ls=":", lw=1, label="full model")
        ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="no amplification (1x)")
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        if log:
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
        ax.set_xlabel(label, fontsize=8)
        ax.set_title(arch if i == 0 else "", fontsize=9)
        ax.set_ylabel(f"{attack}: transfer amplification (x, log)" if j == 0 else "",
                      fontsize=8)
        ax.tick_params(labelsize=7)
    missing = rows.latency.isna().sum()
    if missing:
        axes[-1][0].text(0, -0.42, f"{missing} sibling rows have no CPU kernels, so no "
                                   "latency (not shown)", transform=axes[-1][0].transAxes,
                         fontsize=7)
    _figure_legend(figure, axes)
    at = ", ".join(f"{a} at eps {g.eps.iloc[0]:g}" for a, g in rows.groupby("attack"))
    figure.suptitle(f"What each sibling saves vs how much it helps attack the full model "
                    f"({at}; 95% intervals)", y=1.03, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    _save(figure, out)


def heatmap_panels(df: pd.DataFrame, readings: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Amplification per (architecture, sibling): transfer at each transfer attack's
    smallest eps; queries as the factor by which the sibling prior needs fewer queries
    than the independent prior (at the independent prior's final success rate)."""
    t = _smallest_eps(df)
    t = t[t.source_role == "sibling"].rename(columns={
        "amplification": "value", "amplification_ci_low": "ci_low",
        "amplification_ci_high": "ci_high", "amplification_bound": "bound"})
    q = readings.query("reference == 'independent' and source_role == 'sibling' and "
                       "statistic == 'query_factor' and level == 'final'"
                       ).rename(columns={"source_id": "compression"})
    panels = {f"transfer: {a}, eps {g.eps.iloc[0]:g}": g for a, g in t.groupby("attack")}
    panels |= {f"queries: {a} sibling prior vs independent, eps {e:g}": g
               for (a, e), g in q.groupby(["attack", "eps"])}
    return panels


def _cell(r: pd.Series) -> str:
    mark = {True: ">", False: ""}.get(r.bound, r.bound or "")
    return f"{mark}{r.value:.1f}x\n[{r.ci_low:.1f}, {r.ci_high:.1f}]"


def heatmap_figure(df: pd.DataFrame, readings: pd.DataFrame, out: str | Path) -> None:
    """Amplification heatmaps, architecture x sibling, one panel per attack (transfer and
    query), each cell with its 95% interval; a shared log colour scale, 1x at its centre."""
    panels = {k: v.dropna(subset=["value"]) for k, v in heatmap_panels(df, readings).items()}
    panels = {k: v for k, v in panels.items() if len(v)}
    if not panels:
        _blank(out, "no amplification to draw in this run")
        return
    values = pd.concat([v.value for v in panels.values()])
    low = values[values > 0].min()  # 0x (the sibling fooled nothing) stays uncoloured
    norm = matplotlib.colors.LogNorm(vmin=min(float(low), 1.0) if pd.notna(low) else 0.5,
                                     vmax=max(float(values.max()), 2.0))
    widths = [v.compression.nunique() + 1 for v in panels.values()]
    figure, axes = plt.subplots(1, len(panels), squeeze=False, width_ratios=widths,
                                figsize=(1.3 * sum(widths) + 1.5, 0.75 * max(
                                    v.arch.nunique() for v in panels.values()) + 1.8))
    for k, (ax, (title, d)) in enumerate(zip(axes[0], panels.items())):
        values = d.pivot_table(index="arch", columns="compression", values="value")
        text = d.assign(cell=[_cell(r) for _, r in d.iterrows()]).pivot_table(
            index="arch", columns="compression", values="cell", aggfunc="first"
        ).reindex(index=values.index, columns=values.columns).fillna("n/a")
        sns.heatmap(values, norm=norm, cmap="cividis", annot=text, fmt="", ax=ax, cbar=False,
                    annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("sibling", fontsize=8)
        ax.set_ylabel("architecture" if k == 0 else "", fontsize=8)
        ax.tick_params(labelsize=7, rotation=0)
        ax.tick_params(axis="x", rotation=30)
    bar = figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="cividis"),
                          ax=axes[0].tolist(), fraction=0.03, pad=0.02)
    bar.set_label("amplification (x, log; 1x = no help)", fontsize=8)
    _log_axis(bar.ax.yaxis)
    figure.suptitle("How much each sibling helps attack its full model (95% intervals)",
                    fontsize=10)
    _save(figure, out)


def product_table(models: pd.DataFrame) -> pd.DataFrame:
    """Every full model and sibling as a product; accuracy cost against its full model."""
    full_acc = models[models.role == "full"].set_index("arch")["test_accuracy"]
    rows = models[models.role.isin(["full", "sibling"])].sort_values(["arch", "role", "compression"])
    return pd.DataFrame({
        "arch": rows.arch, "model": rows.compression.where(rows.role == "sibling", "full"),
        "family": rows.compression_family,
        "accuracy (%)": rows.test_accuracy.round(2),
        "vs full (pts)": (rows.test_accuracy - rows.arch.map(full_acc)).round(2),
        "agreement with full (%)": rows.agreement_with_full.round(2),
        "parameters": rows.parameters,
        "size (KiB)": (rows.size_bytes / 1024).round(1),
        "latency b=1 (ms)": rows.latency_ms.round(2),
        "runtime": rows.runtime,
        "deployed vs sibling agreement (%)": rows.deployed_agreement.round(2),
    })


def _row_ratio(r: pd.Series, name: str) -> str:
    return ratio(r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"], r[f"{name}_bound"])


def success_text(r: pd.Series) -> str:
    """A success rate as the report prints it: percent, Wilson 95% interval, the count."""
    return (f"{100 * r.success_rate:.1f} [{100 * r.success_ci_low:.1f}, "
            f"{100 * r.success_ci_high:.1f}] ({r.n_success}/{r.n_examples})")


def _with_success_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(success=[success_text(r) for _, r in df.iterrows()])


def headline_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per arch, attack and sibling at the smallest eps: success from each source role."""
    eps0 = df["eps"].min()
    at = _with_success_text(df[df.eps == eps0])
    key = ["arch", "attack"]
    role_rate = at[at.source_role.isin(BASELINE_ROLES)].pivot_table(
        index=key, columns="source_role", values="success", aggfunc="first")
    sib = at[at.source_role == "sibling"]
    rows = []
    for _, r in sib.iterrows():
        others = role_rate.loc[(r.arch, r.attack)] if (r.arch, r.attack) in role_rate.index else {}
        rows.append({
            "arch": r.arch, "attack": r.attack, "sibling": r.compression, "eps": eps0,
            "sibling acc (%)": f"{r.source_clean_acc:.2f}",
            "target acc (%)": f"{r.target_clean_acc:.2f}",
            "sibling success (%)": r.success,
            "independent success (%)": others.get("independent", "n/a"),
            "cross-arch success (%)": others.get("cross-arch", "n/a"),
            "white-box success (%)": others.get("whitebox", "n/a"),
            "amplification": _row_ratio(r, "amplification"),
        })
    return pd.DataFrame(rows)


def query_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per arch, eps and query attack/prior: success within budget, queries over successes
    and, for prior-guided attacks, how many times fewer queries it needed than the no-prior
    baseline and than the independent model as prior, each at the reference's final
    success rate."""
    q = df[df.attack_kind == "query"]
    return pd.DataFrame([{
        "arch": r.arch, "eps": r.eps, "attack": r.attack, "prior": source_label(r),
        "budget": int(r.query_budget), "success (%)": success_text(r),
        "median queries (successes)": f"{r.median_queries_success:.0f}",
        "lambda = 1 (%)": "" if pd.isna(r.prior_lambda_one) else f"{100 * r.prior_lambda_one:.0f}",
        "vs no prior": "" if pd.isna(r.baseline_attack) else _row_ratio(r, "query_reduction"),
        "vs independent prior": ("" if r.source_role == "independent"
                                 else _row_ratio(r, "query_amplification")),
    } for _, r in q.sort_values(["arch", "eps", "attack", "source_role"]).iterrows()])


def query_control_table(readings: pd.DataFrame) -> pd.DataFrame:
    """The query headline: each prior against the independent model as prior, read at the
    independent prior's final success rate, at 50% of the images and as the area between
    the success curves (points of success averaged over the budget)."""
    r = readings[readings.reference == "independent"]
    if r.empty:
        return pd.DataFrame()
    text = r.assign(text=[
        (ratio(x.value, x.ci_low, x.ci_high, x.bound) if x.statistic == "query_factor"
         else f"{x.value:+.1f} [{x.ci_low:+.1f}, {x.ci_high:+.1f}]") for x in r.itertuples()])
    table = text.pivot_table(index=["arch", "eps", "attack", "source_role", "source_id"],
                             columns="level", values="text", aggfunc="first")
    table = table.reindex(columns=["final", "50%", "area"]).reset_index()
    return table.rename(columns={
        "source_role": "prior", "source_id": "source",
        "final": "x fewer queries (at independent's final rate)",
        "50%": "x fewer queries (to 50%)", "area": "curve gain (pts)"})


# --- similarity and the defense ---------------------------------------------------------

def _smallest_eps(df: pd.DataFrame) -> pd.DataFrame:
    """Each transfer attack's rows at its smallest eps."""
    return smallest_eps(df[df.attack_kind == "transfer"])


def similarity_figure(df: pd.DataFrame, corr: pd.DataFrame, out: str | Path) -> None:
    """Gradient cosine vs each attack's outcome over all (architecture, sibling) pairs,
    defended siblings marked; a least-squares line and Spearman's rho with its interval."""
    pairs = pd.concat([_smallest_eps(df).assign(outcome=lambda d: 100 * d.success_rate),
                       df[df.query_reduction.notna()].assign(outcome=lambda d: d.query_reduction)])
    pairs = pairs[pairs.source_role.isin(["sibling", "defended"])].dropna(subset=["grad_cosine"])
    if pairs.empty:
        _blank(out, "no sibling pairs with a similarity and an outcome in this run")
        return
    pairs = pairs.assign(sibling=pairs.source_role.map({"sibling": "as published",
                                                       "defended": "defended"}))
    pairs = pairs.assign(**_outcome_interval(pairs))
    palette, attacks = _palette(pairs.compression_family), sorted(pairs.attack.unique())
    figure, axes = plt.subplots(1, len(attacks), figsize=(4.4 * len(attacks), 3.8), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        data = pairs[pairs.attack == attack]
        ax.errorbar(data.grad_cosine, data.outcome, fmt="none", ecolor="lightgrey",
                    elinewidth=0.7, yerr=[data.outcome - data.low, data.high - data.outcome])
        sns.scatterplot(data=data, x="grad_cosine", y="outcome", hue="compression_family",
                        style="sibling", palette=palette, ax=ax, s=45, zorder=3)
        if data.grad_cosine.nunique() > 1:
            slope, intercept = np.polyfit(data.grad_cosine, data.outcome, 1)
            xs = np.linspace(data.grad_cosine.min(), data.grad_cosine.max(), 2)
            ax.plot(xs, slope * xs + intercept, color="grey", lw=1)
        c = corr[(corr.attack == attack) & (corr.metric == "grad_cosine")]
        rho = "\n".join(f"{r.outcome}, {r.analysis}, eps {r.eps_rule}: rho {r.spearman:.2f} "
                        f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in c.itertuples())
        query = data.attack_kind.iloc[0] == "query"
        ax.set_title(f"{attack}{'' if query else f', points at eps {data.eps.min():g}'}\n{rho}",
                     fontsize=7)
        ax.set_xlabel("input-gradient cosine with the full model", fontsize=8)
        ax.set_ylabel("query reduction vs no prior (x)" if query
                      else "transfer success (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    labels = [{"compression_family": "family:", "sibling": "sibling:"}.get(x, x) for x in labels]
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7,
                  bbox_to_anchor=(0.5, -0.08), frameon=False)
    figure.suptitle("Similarity vs vulnerability, one point per (architecture, sibling); "
                    "95% intervals", fontsize=9)
    figure.tight_layout()
    _save(figure, out)


def _outcome_interval(pairs: pd.DataFrame) -> dict[str, pd.Series]:
    """The 95% interval of each pair's outcome: Wilson for a success rate (in %), the
    bootstrap interval for a query reduction."""
    rate = pairs.attack_kind == "transfer"
    return {"low": (100 * pairs.success_ci_low).where(rate, pairs.query_reduction_ci_low),
            "high": (100 * pairs.success_ci_high).where(rate, pairs.query_reduction_ci_high)}


# What the defense is judged by, per attack kind; the labels the report shows.
DEFENSE_MEASURES = {
    "transfer": {"success_rate": "success (%)"},
    "query": {"query_reduction": "query reduction (x)",
              "median_queries_success": "median queries (successes)",
              "success_rate": "success (%)"},
}
ACCURACY = "clean accuracy (%)"
# The columns of the defense table: where each comes from, as (source role, defense); the
# defense itself stands for the row's, None for its control. Every adaptive attacker is
# shown on the defended sibling and, as its reference, on the sibling as published.
DEFENSE_SOURCES = {"undefended": ("sibling", "none"), "control": ("defended", None),
                   "defended": ("defended", "*"),
                   **{role: (role, "*") for role in ADAPTIVE_ROLES},
                   **{f"{role} (undefended)": (role, "none") for role in ADAPTIVE_ROLES}}


def defense_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per defended sibling (lam > 0), attack and measure, read off the benchmark
    rows: the sibling as published, the lam = 0 control (role ``defended``), the defended
    sibling and the two adaptive attackers; transfer at each attack's smallest eps, query
    attacks at theirs; plus each source's clean accuracy."""
    rows = pd.concat([_smallest_eps(df), df[df.attack_kind == "query"]])
    index = rows.set_index(["arch", "attack", "eps", "source_role", "compression", "defense"]
                           ).sort_index()
    defended = rows[rows.source_role.isin(DEFENDED_ROLES) & (rows.defense_lambda > 0)]
    out, with_accuracy = [], set()
    for (arch, attack, eps, sibling, defense), g in defended.groupby(
            ["arch", "attack", "eps", "compression", "defense"]):
        first = g.iloc[0]
        which = {"*": defense, None: first.defense_control}
        sources = {name: (role, which.get(d, d)) for name, (role, d) in DEFENSE_SOURCES.items()}
        keys = {name: (arch, attack, eps, role, sibling, d) for name, (role, d) in sources.items()}
        found = {name: index.loc[key] for name, key in keys.items() if key in index.index}
        measures = dict(DEFENSE_MEASURES[first.attack_kind])
        if (arch, sibling, defense) not in with_accuracy:  # once per defended sibling
            measures["source_clean_acc"] = ACCURACY
            with_accuracy.add((arch, sibling, defense))
        change = (found["defended"][["control_success_ratio", "control_success_ratio_ci_low",
                                     "control_success_ratio_ci_high"]].tolist()
                  if "defended" in found else [np.nan] * 3)
        for measure, label in measures.items():
            out.append({"arch": arch, "sibling": sibling, "defense": defense,
                        "lam": first.defense_lambda,
                        "attack": "" if measure == "source_clean_acc" else attack,
                        "eps": eps, "measure": measure, "label": label,
                        "failed": bool(first.defense_failed),
                        **{name: found[name][measure] if name in found else np.nan
                           for name in sources},
                        **{f"{name} text": measure_text(found[name], measure) if name in found
                           else "" for name in sources},
                        **{f"{name} {end}": interval_end(found.get(name), measure, end)
                           for name in sources for end in ("low", "high")},
                        "change": change})
    return pd.DataFrame(out)


def interval_end(row: pd.Series | None, measure: str, end: str) -> float:
    """The ``low`` or ``high`` end of a defense-table value's 95% interval (NaN: none)."""
    column = {"success_rate": f"success_ci_{end}",
              "query_reduction": f"query_reduction_ci_{end}"}.get(measure)
    return np.nan if row is None or column is None else float(row[column])


def measure_text(row: pd.Series, measure: str) -> str:
    """One defense-table cell: a rate with its Wilson interval and count, a ratio with its
    bootstrap interval, anything else as a number."""
    if measure == "success_rate":
        return success_text(row)
    if measure == "query_reduction":
        return _row_ratio(row, "query_reduction")
    return "" if pd.isna(row[measure]) else f"{row[measure]:.2f}"


def defense_figure(table: pd.DataFrame, out: str | Path) -> None:
    """Before/after per architecture (columns) and measure (rows): for each defended
    sibling, the undefended sibling, the control, the defended sibling and the adaptive
    attackers, each bar with its 95% interval (Wilson for a rate, bootstrap for a query
    reduction). Median queries over successes has no interval and stays in the table."""
    table = table[table.measure != "median_queries_success"]
    if table.empty:
        _blank(out, "no defense with lam > 0 in this run's config")
        return
    sources = [s for s in DEFENSE_SOURCES if table[s].notna().any()]
    eps = table.eps.map(lambda e: f" eps {e:g}").where(table.attack != "", "")
    table = table.assign(target=table.sibling + "+" + table.defense,
                         panel=(table.attack + eps + " " + table.label).str.strip())
    panels, archs = list(dict.fromkeys(table.panel)), sorted(table.arch.unique())
    palette = dict(zip(sources, sns.color_palette("colorblind", len(sources))))
    figure, axes = plt.subplots(len(panels), len(archs), squeeze=False,
                                figsize=(3.2 * len(archs), 2.3 * len(panels)))
    for (i, panel), (j, arch) in itertools.product(enumerate(panels), enumerate(archs)):
        ax, d = axes[i][j], table[(table.panel == panel) & (table.arch == arch)]
        targets = list(dict.fromkeys(table[table.arch == arch].target))
        if i == 0:
            ax.set_title(arch if len(targets) > 1 else f"{arch}\n{targets[0]}", fontsize=8)
        if d.empty:
            ax.axis("off")
            continue
        _defense_bars(ax, d.set_index("target").reindex(targets), sources, palette)
        ax.set_ylabel(panel if j == 0 else "", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=min(len(sources), 5), fontsize=7,
                  bbox_to_anchor=(0.5, 1.0), frameon=False)
    figure.suptitle("Similarity-unpairing: before / after, with the lam = 0 control and the "
                    "adaptive attackers (95% intervals)", y=1.03, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.985))
    _save(figure, out)


def _defense_bars(ax: plt.Axes, rows: pd.DataFrame, sources: list[str],
                  palette: dict[str, tuple]) -> None:
    """One measure's bars: a group per defended sibling (named on the x axis when there is
    more than one; the column title names a lone one), a bar per source in a fixed slot."""
    width = 0.8 / len(sources)
    for k, source in enumerate(sources):
        scale = np.where(rows.measure == "success_rate", 100.0, 1.0)
        value, low, high = (scale * rows[f"{source}{end}"].to_numpy(dtype=float)
                            for end in ("", " low", " high"))
        error = (None if np.isnan(low).all() else
                 np.nan_to_num(np.stack([np.maximum(value - low, 0), np.maximum(high - value, 0)])))
        ax.bar(np.arange(len(rows)) + (k - (len(sources) - 1) / 2) * width, value, width,
               color=palette[source], label=source, yerr=error, capsize=1.5,
               error_kw={"elinewidth": 0.6})
    ax.set_xlim(-0.5, len(rows) - 0.5)
    if len(rows) > 1:
        ax.set_xticks(np.arange(len(rows)), rows.index, fontsize=6, rotation=20, ha="right")
    else:
        ax.set_xticks([])


def _frontier_panel(ax: plt.Axes, rows: pd.DataFrame, y: str, colours: dict) -> None:
    """One architecture's defense frontier for one measure: a line per variant from its
    lam = 0 control through its lams, with 95% intervals; the selected lam ringed."""
    controls = rows[rows.lam == 0].set_index("defense")
    for variant, g in rows[rows.lam > 0].groupby("variant"):
        line = pd.concat([controls.loc[[g.control.iloc[0]]].reset_index(),
                          g.sort_values("lam")]) if g.control.iloc[0] in controls.index else g
        ax.errorbar(line.cost, line[y], fmt="-o", color=colours[variant], label=variant,
                    markersize=4, lw=1, elinewidth=0.6, capsize=1.5,
                    yerr=[(line[y] - line[f"{y}_low"]).clip(lower=0),
                          (line[f"{y}_high"] - line[y]).clip(lower=0)])
        for r in line.itertuples():
            ax.annotate(f"{r.lam:g}", (r.cost, getattr(r, y)), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        chosen = g[g.selected]
        ax.scatter(chosen.cost, chosen[y], s=110, facecolors="none", edgecolors="black",
                   linewidths=1, label="selected lam (calibration split)")


def sweep_figure(outcomes: pd.DataFrame, out: str | Path) -> None:
    """The defense frontier per architecture (columns): against the test-accuracy points
    given up against the sibling as published, the strongest attacker's transfer success
    over the lam = 0 control's (a row per transfer attack and eps) and the first
    prior-guided attack's queries with the independent prior over those with the defended
    prior (last row, log). One line per variant from its control through its lams (points
    labelled with lam), the selected lam ringed, the target region (TARGET) shaded."""
    if outcomes.empty or not (outcomes.lam > 0).any():
        _blank(out, "no defended siblings in this run's config")
        return
    archs, colours = sorted(outcomes.arch.unique()), _palette(outcomes.variant[outcomes.lam > 0])
    panels = [(f"{a} eps {e:g}: strongest attacker's\nsuccess / control's", "transfer",
               outcomes[(outcomes.attack == a) & (outcomes.eps == e)])
              for a, e in outcomes[["attack", "eps"]].drop_duplicates().sort_values(
                  ["attack", "eps"]).itertuples(index=False)]
    if outcomes.prior.notna().any():
        panels.append(("P-RGF: independent prior's\nqueries / defended prior's (log)", "prior",
                       smallest_eps(outcomes)))
    figure, axes = plt.subplots(len(panels), len(archs), squeeze=False,
                                figsize=(3.4 * len(archs), 2.8 * len(panels)))
    for (i, (label, y, rows)), (j, arch) in itertools.product(enumerate(panels),
                                                             enumerate(archs)):
        ax = axes[i][j]
        ax.axvspan(min(0.0, outcomes.cost.min()) - 0.2, TARGET["cost"], ymin=0,
                   color="green", alpha=0.08, lw=0, label="target: cost within 1 point")
        ax.axhline(TARGET[y], color="green", ls="--", lw=0.8, label="target: transfer half "
                   "the control's; prior at most 1.5x")
        ax.axhline(1.0, color="grey", ls=":", lw=0.8)
        _frontier_panel(ax, rows[rows.arch == arch].dropna(subset=[y]), y, colours)
        if y == "prior":
            ax.set_yscale("log")
            _log_axis(ax.yaxis)
        ax.set_title(arch if i == 0 else "", fontsize=9)
        ax.set_ylabel(label if j == 0 else "", fontsize=8)
        ax.set_xlabel("accuracy given up vs the published sibling (pts, test split)"
                      if i == len(panels) - 1 else "", fontsize=7)
        ax.tick_params(labelsize=7)
    _figure_legend(figure, axes)
    figure.suptitle("Defense frontier: each variant from its lam = 0 control through its "
                    "lams (labelled); 95% paired bootstrap intervals", y=1.03, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    _save(figure, out)


def _change(r: pd.Series) -> str:
    """How the defended sibling compares with its control, in the measure's own terms;
    success as a relative change with its paired bootstrap interval."""
    if r.measure == "success_rate":
        return "" if r.control == 0 or pd.isna(r.change[0]) else change(*r.change)
    if r.measure == "query_reduction":
        if pd.isna(r.defended):  # P-RGF never reached its baseline's success rate
            return "never reached the baseline's success"
        return f"{r.control / r.defended:.1f}x smaller" if r.defended > 0 else ""
    return f"{r.defended - r.control:+.2f}"


def defense_markdown(table: pd.DataFrame) -> str:
    """The defense table as the summary shows it, with the comparison the target is read from."""
    if table.empty:
        return "(no defense with lam > 0 configured)"
    return pd.DataFrame([{
        "arch": r.arch, "sibling": r.sibling, "defense": r.defense,
        "measure": f"{r.attack} {r.label}".strip(),
        **{name: r[f"{name} text"] for name in DEFENSE_SOURCES if table[name].notna().any()},
        "defended vs control": _change(r), "failed": "FAILED" if r.failed else "",
    } for _, r in table.iterrows()]).to_markdown(index=False)


def target_markdown(outcomes: pd.DataFrame) -> str:
    """The best selected defense per architecture (claims.best_defenses) and whether it
    meets the target: the report's answer to which variant to publish."""
    best = best_defenses(outcomes) if len(outcomes) else outcomes
    if best.empty and (outcomes.empty or not (outcomes.lam > 0).any()):
        return "(no defended sibling with lam > 0 in this run)"
    defended = outcomes[outcomes.lam > 0]
    lines = []
    for attack, g in defended.groupby("attack"):
        chosen = best[best.attack == attack]
        unselected = sorted(set(g.arch) - set(chosen.arch))
        lines.append(f"Target met on {int(chosen.meets.sum())} of {g.arch.nunique()} "
                     f"architectures ({attack})" + (
                         "; no lam within tolerance on the calibration split: "
                         f"{', '.join(unselected)}." if unselected else "."))
    if best.empty:
        return "\n".join(lines)
    table = pd.DataFrame([{
        "attack": f"{r.attack} eps {r.eps:g}", "arch": r.arch, "sibling": r.compression,
        "best variant": r.variant, "lam": r.lam, "accuracy cost (pts)": round(r.cost, 2),
        f"strongest attacker vs control (target <= {TARGET['transfer']:g}x)":
            f"{r.transfer:.2f}x [{r.transfer_low:.2f}, {r.transfer_high:.2f}] ({r.strongest})",
        f"prior vs independent (target <= {TARGET['prior']:g}x)":
            ratio(r.prior, r.prior_low, r.prior_high),
        "meets target": "yes" if r.meets else "no",
    } for r in best.itertuples()])
    return "\n".join([*lines, "", table.to_markdown(index=False)])


def support_markdown(support: pd.DataFrame) -> str:
    """What the plan left out and why, and the capabilities some architecture lacks."""
    gaps = support[~support.supported]
    if gaps.empty:
        return "Every configured compression and defense applies to every architecture."
    left = gaps[gaps.kind != "capability"]
    lines = ["Left out of the plan (never run, so never failed):", ""]
    lines += ([f"- {r.arch} x {r.kind} `{r.component}`: {r.reason}" for r in left.itertuples()]
              or ["- nothing"])
    lines += ["", "Capabilities that do not apply (the runs above do not need them, or "
                  "record where the deployed form differs):", ""]
    lines += [f"- {r.arch}: {r.component}: {r.reason}"
              for r in gaps[gaps.kind == "capability"].itertuples()] or ["- none"]
    return "\n".join(lines)


def summary_markdown(df: pd.DataFrame, models: pd.DataFrame, corr: pd.DataFrame,
                     readings: pd.DataFrame, support: pd.DataFrame) -> str:
    """The report text: the paper's claims beside this run's numbers, then the headline
    table, all rows by eps, queries, similarity, the defense, model accuracies, the support
    matrix, provenance."""
    claims = claims_markdown(df, corr, readings)
    queries = df[df.attack_kind == "query"]
    devices = ", ".join(sorted(df.device.dropna().unique()))
    defense = defense_markdown(defense_table(df))
    target = target_markdown(defense_outcomes(df, readings))
    df = _published(df)
    eps_table = _with_success_text(df).assign(source=df.apply(source_label, axis=1)).pivot_table(
        index=["arch", "attack", "source"], columns="eps", values="success", aggfunc="first")
    model_cols = ["arch", "role", "compression", "defense", "width", "parameters",
                  "test_accuracy", "agreement_with_full", "sparsity", "failed"]
    first = df.iloc[0]
    return "\n".join([
        f"# siblings benchmark: `{first.run_name}` on {first.dataset}",
        "",
        claims,
        "",
        "![the security-efficiency frontier](frontier.png)",
        "",
        "![amplification per architecture and sibling](amplification.png)",
        "",
        "## Transfer attacks",
        "",
        "Transfer attacks against the full-scale model. Success = the target misclassifies an",
        "image it classified correctly. Amplification = sibling-source success divided by",
        "independent-source success (same architecture, other seed) at the same eps. Every",
        "success rate reads: percent [Wilson 95% interval] (images fooled / images attacked);",
        "every ratio: value [paired bootstrap 95% interval, 2,000 resamples of the images,",
        "the same draws for both sides]. \"> x\": the independent source fooled no image and",
        "is counted as one, so the ratio is at least x.",
        "",
        f"### Headline (smallest eps = {df.eps.min():g})",
        "",
        headline_table(df).to_markdown(index=False),
        "",
        "### Transfer success (%) by eps",
        "",
        eps_table.to_markdown(),
        "",
        "![transfer success](transfer_success.png)",
        "",
        "## Query attacks on the black-box target",
        "",
        "Every image sent to the target counts as a query; the budget is per image and never",
        "exceeded. Success = fooled within the budget.",
        "",
        "### Does the sibling help more than any other surrogate?",
        "",
        "Each prior against the independent model (same architecture, other seed) as prior,",
        "on the same images: how many times fewer queries it needed to fool as many images",
        "as the independent prior fooled in all (and 50% of them), and the area between the",
        "two success-vs-queries curves divided by the budget (points of success, averaged",
        "over the budget; positive = this prior is ahead). An attack that never reached the",
        "level is read at the budget, so the factor is a bound (\">\" or \"<\"); n/a = neither",
        "reached it. results/<run>/queries.parquet holds every reading.",
        "",
        (query_control_table(readings).to_markdown(index=False)
         if len(query_control_table(readings)) else "(no prior-guided attack with an independent prior)"),
        "",
        "### Every query attack",
        "",
        "Median queries are over successes only, so biased low (failures spent the whole",
        "budget). vs no prior: how many times fewer queries than the no-prior baseline (RGF)",
        "needed to reach the baseline's final success rate; vs independent prior: the same",
        "against the independent prior's final rate. lambda = 1: share of P-RGF iterations",
        "that stepped along the prior with no sampling. Square is the strong no-prior floor.",
        "",
        query_table(queries).to_markdown(index=False) if len(queries) else "(no query attacks configured)",
        "",
        "![success vs queries](query_success.png)",
        "",
        "## Similarity and vulnerability",
        "",
        "Similarity of each source to the full model on a fixed seeded set of test images",
        "(results/<run>/similarity.parquet). The gradient is that of the logit margin (true",
        "class minus the best other), which does not saturate like cross-entropy. Spearman's",
        "rho with a 95% bootstrap interval (2,000 resamples of the pairs), over the",
        "(architecture, sibling) pairs, defended siblings included. pooled: all pairs as one",
        "set, which at a small eps mostly ranks how easy each target is; within-arch: ranks",
        "taken within each architecture (the bootstrap resamples within each), the analysis",
        "that controls for the target; normalised_success: success divided by the white-box",
        "success on the same target. 'per arch' eps: each architecture's eps where its",
        "white-box success is closest to 50%, read off this run's rows. KL is a divergence,",
        "so similar models have a small KL and its rho has the opposite sign.",
        "",
        correlation_markdown(corr),
        "",
        "![similarity vs vulnerability](similarity.png)",
        "",
        "## The defense: similarity-unpairing",
        "",
        "Each defended sibling (lam > 0) against its lam = 0 control (the same fine-tuning",
        "schedule without the penalty) and the sibling as published. Transfer: success (%)",
        "at the attack's smallest eps. Query: P-RGF's query reduction factor at equal success",
        "against its no-prior baseline (lower = the prior helps less). The adaptive",
        "attackers, each on the defended sibling and, \"(undefended)\", on the sibling as",
        "published: averaged, PGD on the sibling's gradient averaged over 8 fixed random",
        "points of the L-inf ball of radius 0.03 around the current image; extracted, a",
        "fresh model distilled from the sibling's scores until within 3 points of its",
        "calibration accuracy (models.parquet: failed = it never got there); reversed, the",
        "negated gradient, only against the cosine penalty. FAILED: the defense lost more",
        "accuracy than its tolerance against the undefended sibling.",
        "",
        defense,
        "",
        "![defense before/after](defense.png)",
        "",
        "## The defense to publish, per architecture",
        "",
        "Among each variant's selected lam (the largest within the defense's tolerance on",
        "the calibration split), the best per architecture: one that meets the target, else",
        f"the one with the lowest transfer. Target: at most {TARGET['cost']:g} point of test",
        f"accuracy given up; the strongest attacker's transfer at most {TARGET['transfer']:g}x",
        "its control's at the attack's smallest eps; P-RGF with it as prior at most",
        f"{TARGET['prior']:g}x faster than with the independent prior. Point estimates, with",
        "95% paired bootstrap intervals.",
        "",
        target,
        "",
        "![defense frontier](lambda_sweep.png)",
        "",
        "## Siblings as products",
        "",
        "Size is what a device loads: float32 safetensors; PyTorch's int8 model for 8-bit",
        "quantization (its agreement with the fake-quantized sibling the attacks use is the",
        "last column); bit-packed weights for narrower bit-widths, which have no PyTorch CPU",
        "kernels (no latency); nonzeros plus a bitmask for unstructured pruning (run dense).",
        "",
        product_table(models).to_markdown(index=False),
        "",
        "![accuracy vs size](accuracy_vs_size.png)",
        "",
        "## Models (accuracy on the test split, %)",
        "",
        "failed: a defended sibling that lost more accuracy than its tolerance, or an",
        "extracted surrogate that never came within `extract.within` points of its sibling",
        "on the calibration split.",
        "",
        models[model_cols].sort_values(["arch", "role", "compression", "defense"]).to_markdown(
            index=False, floatfmt=("", "", "", "", "g", "", ".2f", ".2f", ".3f", "")),
        "",
        "## Support (results/<run>/support.parquet)",
        "",
        support_markdown(support),
        "",
        "## Provenance",
        "",
        f"- config hash: `{first.config_hash}` (results/{first.run_name}/config.yaml)",
        f"- devices: {devices}",
        f"- git commit: `{first.git_commit}`",
        f"- attack code versions: {', '.join(sorted(df.code_version.unique()))}",
        f"- packages: {first.package_versions}",
        f"- rows: results/{first.run_name}/benchmark.parquet ({len(df)} rows), "
        f"models.parquet ({len(models)} rows)",
        "",
    ])


@dataclass(frozen=True)
class Tables:
    """The aggregated Parquet files a report is drawn from."""

    benchmark: pd.DataFrame
    models: pd.DataFrame
    correlations: pd.DataFrame
    queries: pd.DataFrame
    support: pd.DataFrame


def _published(df: pd.DataFrame) -> pd.DataFrame:
    """Transfer rows from sources as published (no defended sibling or its attackers)."""
    return df[(df.attack_kind == "transfer") & ~df.source_role.isin(DEFENDED_ROLES)]


# How each figure of siblings.figures.FIGURES is drawn.
DRAW: dict[str, Callable[[Tables, Path], None]] = {
    "frontier": lambda t, out: frontier_figure(t.benchmark, t.models, out),
    "amplification": lambda t, out: heatmap_figure(t.benchmark, t.queries, out),
    "transfer_success": lambda t, out: transfer_figure(_published(t.benchmark), out),
    "query_success": lambda t, out: query_figure(t.benchmark, out),
    "accuracy_vs_size": lambda t, out: efficiency_figure(t.models, out),
    "similarity": lambda t, out: similarity_figure(t.benchmark, t.correlations, out),
    "defense": lambda t, out: defense_figure(defense_table(t.benchmark), out),
    "lambda_sweep": lambda t, out: sweep_figure(defense_outcomes(t.benchmark, t.queries), out),
}


def summary(t: Tables) -> str:
    return summary_markdown(t.benchmark, t.models, t.correlations, t.queries, t.support)
