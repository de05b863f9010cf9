"""The ``report`` stage: figures and ``summary.md`` drawn only from the aggregated Parquet files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from siblings.artifacts import atomic_path  # noqa: E402
from siblings.logs import log, log_to  # noqa: E402


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
    with atomic_path(out) as tmp:
        grid.figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(grid.figure)


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
            "white-box success (%)": f"{100 * others.get('whitebox', float('nan')):.1f}",
            "amplification": _fmt_ratio(r.amplification),
        })
    return pd.DataFrame(rows)


def summary_markdown(df: pd.DataFrame, models: pd.DataFrame) -> str:
    """The report text: headline table, all rows by eps, model accuracies, provenance."""
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


def run(benchmark: str, models: str, figure_out: str, summary_out: str,
        log_file: str | None = None) -> None:
    with log_to(log_file):
        df, mdf = pd.read_parquet(benchmark), pd.read_parquet(models)
        transfer_figure(df, figure_out)
        with atomic_path(summary_out) as tmp:
            tmp.write_text(summary_markdown(df, mdf))
        log.info("report written: %s, %s", figure_out, summary_out)
