"""The ``report`` stage: figures and ``summary.md`` drawn only from the aggregated Parquet files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from siblings.artifacts import atomic_path  # noqa: E402
from siblings.logs import log, log_to  # noqa: E402


def _save(figure: plt.Figure, out: str | Path) -> None:
    """Writes a figure atomically (a half-written PNG never replaces a good one)."""
    with atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)


def source_label(row: pd.Series) -> str:
    """Legend label of an attack's source: the role, plus the compression for siblings."""
    return f"sibling {row.compression}" if row.source_role == "sibling" else row.source_role


def transfer_figure(df: pd.DataFrame, out: str | Path) -> None:
    """Transfer success vs eps, one panel per architecture (and attack), one line per source."""
    data = df.assign(source=df.apply(source_label, axis=1),
                     success=100 * df["success_rate"])
    grid = sns.relplot(data=data, x="eps", y="success", hue="source", style="source",
                       col="arch", row="attack", kind="line", markers=True, dashes=False,
                       height=3.0, aspect=1.0, facet_kws={"sharey": True})
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
        for q in steps:
            rows.append({"arch": r.arch, "eps": r.eps, "queries": q,
                         "source": f"{r.attack} / {source_label(r)}",
                         "success": 100 * np.searchsorted(done, q, side="right") / len(r.queries_at_success)})
    return pd.DataFrame(rows)


def query_figure(df: pd.DataFrame, out: str | Path) -> None:
    """Success vs queries for every query attack and prior, one panel per architecture."""
    data = query_curves(df)
    if data.empty:  # the figure is a workflow output: say why it is blank
        figure = plt.figure(figsize=(5, 1))
        figure.text(0.5, 0.5, "no query attacks in this run's config", ha="center")
        _save(figure, out)
        return
    grid = sns.relplot(data=data, x="queries", y="success", hue="source", col="arch",
                       row="eps", kind="line", drawstyle="steps-post", height=3.0, aspect=1.1,
                       facet_kws={"sharey": True, "sharex": True})
    for ax in grid.axes.flat:
        ax.set_xscale("log")
    grid.set_axis_labels("queries to the target (log)", "images fooled (%)")
    grid.set_titles("{col_name}, eps {row_name}")
    grid.figure.suptitle("Query attacks: success within q queries (curves end at the budget)",
                         y=1.02)
    _save(grid.figure, out)


def efficiency_figure(models: pd.DataFrame, out: str | Path) -> None:
    """Accuracy vs deployed size: one panel per architecture, siblings coloured by family,
    the full model (role ``full``) as a black star; the efficiency side of the trade-off."""
    data = models[models.role.isin(["full", "sibling"])].assign(
        size_kb=lambda d: d["size_bytes"] / 1024,
        kind=lambda d: d["compression_family"].where(d.role == "sibling", "full model"))
    families = sorted(data.loc[data.role == "sibling", "kind"].unique())
    palette = {**dict(zip(families, sns.color_palette("tab10", len(families)))),
               "full model": "black"}
    markers = {**{f: "o" for f in families}, "full model": "*"}
    grid = sns.relplot(data=data, x="size_kb", y="test_accuracy", hue="kind", style="kind",
                       markers=markers, palette=palette, col="arch", col_wrap=4, s=120,
                       height=3.0, aspect=1.1, facet_kws={"sharex": False, "sharey": False})
    for ax, (_, panel) in zip(grid.axes.flat, data.groupby("arch", sort=True)):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap
        for _, r in panel[panel.role == "sibling"].iterrows():
            ax.annotate(r.compression, (r.size_kb, r.test_accuracy), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    grid.set_axis_labels("deployed size (KiB, log)", "test accuracy (%)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Siblings as products: accuracy vs size", y=1.03)
    _save(grid.figure, out)


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


def _fmt_ratio(x: float) -> str:
    return "n/a" if pd.isna(x) else ("inf" if x == float("inf") else f"{x:.2f}x")


def headline_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per arch, attack and sibling at the smallest eps: success from each source role."""
    eps0 = df["eps"].min()
    at = df[df.eps == eps0]
    key = ["arch", "attack"]
    role_rate = at[at.source_role != "sibling"].pivot_table(
        index=key, columns="source_role", values="success_rate")
    sib = at[at.source_role == "sibling"]
    rows = []
    for _, r in sib.iterrows():
        others = role_rate.loc[(r.arch, r.attack)] if (r.arch, r.attack) in role_rate.index else {}
        rows.append({
            "arch": r.arch, "attack": r.attack, "sibling": r.compression, "eps": eps0,
            "sibling acc (%)": f"{r.source_clean_acc:.2f}",
            "target acc (%)": f"{r.target_clean_acc:.2f}",
            "sibling success (%)": f"{100 * r.success_rate:.1f}",
            "independent success (%)": f"{100 * others.get('independent', float('nan')):.1f}",
            "cross-arch success (%)": f"{100 * others.get('cross-arch', float('nan')):.1f}",
            "white-box success (%)": f"{100 * others.get('whitebox', float('nan')):.1f}",
            "amplification": _fmt_ratio(r.amplification),
        })
    return pd.DataFrame(rows)


def query_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per arch, eps and query attack/prior: success within budget, queries over successes
    and, for prior-guided attacks, the query reduction factor against their baseline."""
    q = df[df.attack_kind == "query"]
    return pd.DataFrame([{
        "arch": r.arch, "eps": r.eps, "attack": r.attack, "prior": source_label(r),
        "budget": int(r.query_budget), "success (%)": f"{100 * r.success_rate:.1f}",
        "mean queries (successes)": f"{r.mean_queries_success:.0f}",
        "median queries (successes)": f"{r.median_queries_success:.0f}",
        "lambda = 1 (%)": "" if pd.isna(r.prior_lambda_one) else f"{100 * r.prior_lambda_one:.0f}",
        "queries to baseline's rate": "" if pd.isna(r.queries_needed) else f"{r.queries_needed:.0f}",
        "baseline needed": "" if pd.isna(r.baseline_queries_needed) else f"{r.baseline_queries_needed:.0f}",
        "query reduction": "" if pd.isna(r.baseline_attack) else _fmt_ratio(r.query_reduction),
    } for _, r in q.sort_values(["arch", "eps", "attack", "source_role"]).iterrows()])


def summary_markdown(df: pd.DataFrame, models: pd.DataFrame) -> str:
    """The report text: headline table, all rows by eps, model accuracies, provenance."""
    queries = df[df.attack_kind == "query"]
    df = df[df.attack_kind == "transfer"]
    eps_table = df.assign(source=df.apply(source_label, axis=1)).pivot_table(
        index=["arch", "attack", "source"], columns="eps", values="success_rate")
    eps_table = (100 * eps_table).round(1)
    model_cols = ["arch", "role", "compression", "width", "parameters", "test_accuracy",
                  "agreement_with_full", "sparsity"]
    first = df.iloc[0]
    return "\n".join([
        f"# siblings benchmark: `{first.run_name}` on {first.dataset}",
        "",
        "Transfer attacks against the full-scale model. Success = the target misclassifies an",
        "image it classified correctly. Amplification = sibling-source success divided by",
        "independent-source success (same architecture, other seed) at the same eps.",
        "",
        f"## Headline (smallest eps = {df.eps.min():g})",
        "",
        headline_table(df).to_markdown(index=False),
        "",
        "## Transfer success (%) by eps",
        "",
        eps_table.to_markdown(),
        "",
        "![transfer success](transfer_success.png)",
        "",
        "## Query attacks on the black-box target",
        "",
        "Every image sent to the target counts as a query; the budget is per image and never",
        "exceeded. Success = fooled within the budget. Mean and median queries are over",
        "successes only, so they are biased low (failures spent the whole budget). The query",
        "reduction factor = the queries the no-prior baseline needed to reach its final",
        "success rate, divided by the queries the prior-guided attack needed to reach that",
        "same rate, read off the per-image curves (failures never succeed); blank = not",
        "reached within the budget, or the baseline fooled nothing. lambda = 1: share of",
        "P-RGF iterations that stepped along the prior with no sampling.",
        "",
        query_table(queries).to_markdown(index=False) if len(queries) else "(no query attacks configured)",
        "",
        "![success vs queries](query_success.png)",
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
        models[model_cols].sort_values(["arch", "role", "compression"]).to_markdown(
            index=False, floatfmt=("", "", "", "g", "", ".2f", ".2f", ".3f")),
        "",
        "## Provenance",
        "",
        f"- config hash: `{first.config_hash}` (results/{first.run_name}/config.yaml)",
        f"- git commit: `{first.git_commit}`",
        f"- attack code versions: {', '.join(sorted(df.code_version.unique()))}",
        f"- packages: {first.package_versions}",
        f"- rows: results/{first.run_name}/benchmark.parquet ({len(df)} rows), "
        f"models.parquet ({len(models)} rows)",
        "",
    ])


def run(benchmark: str, models: str, figure_out: str, efficiency_out: str, query_out: str,
        summary_out: str, log_file: str | None = None) -> None:
    with log_to(log_file):
        df, mdf = pd.read_parquet(benchmark), pd.read_parquet(models)
        transfer_figure(df[df.attack_kind == "transfer"], figure_out)
        query_figure(df, query_out)
        efficiency_figure(mdf, efficiency_out)
        with atomic_path(summary_out) as tmp:
            tmp.write_text(summary_markdown(df, mdf))
        log.info("report written: %s, %s", figure_out, summary_out)
