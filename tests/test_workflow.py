"""End to end: config/smoke.yaml through Snakemake, then exact reruns and clean failures."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, project_copy, snakemake


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()

EXPECTED_TYPES = {
    "dataset": "string", "arch": "string", "compression": "string", "defense": "string",
    "attack": "string", "source_role": "string", "eps": "double", "n_examples": "int64",
    "success_rate": "double", "target_clean_acc": "double", "source_clean_acc": "double",
    "config_hash": "string", "code_version": "string", "query_budget": "int64",
    "queries_at_success": "list<element: double>", "query_reduction": "double",
}


ADAPTIVE_ROLES = ("reversed", "extracted", "averaged")
DEFENDED_ROLES = ("defended", *ADAPTIVE_ROLES)


def role_count(cfg: dict, params: dict, role: str, arch: str) -> int:
    """How many sources ``role`` attacks ``arch`` from, re-derived from the config alone."""
    if role == "sibling":
        return len(params.get("siblings", cfg["compressions"]))
    if role not in DEFENDED_ROLES:
        return 1
    n, undefended = 0, set()
    for did in params.get("defenses", list(cfg.get("defenses", {}))):
        d = cfg["defenses"][did]
        adaptive_ok = (d["lam"] > 0 and d.get("adaptive", True)
                       and (role != "reversed" or d.get("form") == "cosine"))
        extracted = cfg.get("extract", {}).get("siblings", d["siblings"])
        if arch in d.get("archs", cfg["archs"]) and (role == "defended" or adaptive_ok):
            chosen = [c for c in d["siblings"] if c in params.get("siblings", d["siblings"])
                      and (role != "extracted" or c in extracted)]
            n += len(chosen)
            undefended |= set(chosen)
    # an adaptive attacker also attacks from each undefended sibling: its reference
    return n + (len(undefended) if role in ADAPTIVE_ROLES else 0)


def attack_sources(cfg: dict) -> list[tuple[str, str, str, int]]:
    """(attack, role, arch, number of sources) for every attack job: one per role that has
    a source."""
    out = []
    for aid, params in cfg["attacks"].items():
        roles = (["none"] if params["method"] in ("rgf", "square")
                 else params.get("roles", cfg.get("source_roles", ["sibling", "independent", "whitebox"])))
        out += [(aid, role, arch, n) for role in roles for arch in cfg["archs"]
                if (n := role_count(cfg, params, role, arch))]
    return out


def expected_rows(cfg: dict) -> dict[str, int]:
    """Rows per source role: every attack x role x source x eps."""
    rows: dict[str, int] = {}
    for aid, role, _, n in attack_sources(cfg):
        rows[role] = rows.get(role, 0) + n * len(cfg["attacks"][aid]["eps"])
    return rows


def expected_attack_jobs(cfg: dict) -> int:
    return len(attack_sources(cfg))


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table (empty when nothing to do)."""
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def readme_example(name: str, language: str) -> str:
    """The code block after ``<!-- example: name -->`` in the README."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", readme, re.S)
    assert match, f"README lost its '{name}' example"
    return match.group(1)


def add_readme_compression(work: Path) -> None:
    """Applies the README's worked example (a user's own compression) to a project copy."""
    with open(work / "src/siblings/compress.py", "a") as f:
        f.write("\n\n" + readme_example("compression", "python"))
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    cfg["compressions"].update(yaml.safe_load(readme_example("compression-config", "yaml")))
    (work / "config/smoke.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke workflow, with the README's example compression added as a user would."""
    work = project_copy(tmp_path_factory.mktemp("project"))
    add_readme_compression(work)
    start = time.time()
    result = snakemake(work, "--configfile", "config/smoke.yaml")
    (work / "smoke_seconds").write_text(f"{time.time() - start:.0f}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return work


def test_smoke_produces_typed_parquet_and_report(smoke_run):
    path = smoke_run / "results/smoke/benchmark.parquet"
    schema = pq.read_schema(path)
    assert {col: str(schema.field(col).type) for col in EXPECTED_TYPES} == EXPECTED_TYPES
    df = pd.read_parquet(path)
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    assert df.source_role.value_counts().to_dict() == expected_rows(cfg)
    assert (df[~df.source_role.isin(DEFENDED_ROLES)].defense == "none").all()
    assert df.success_rate.between(0, 1).all()
    assert df.config_hash.nunique() == 1
    whitebox = df[df.source_role == "whitebox"].groupby("arch").success_rate.max()
    assert (whitebox > 0).all()
    models = pd.read_parquet(smoke_run / "results/smoke/models.parquet")
    defended = sum(len(d["siblings"]) * len(d.get("archs", cfg["archs"]))
                   for d in cfg["defenses"].values())
    assert len(models) == len(cfg["archs"]) * (2 + len(cfg["compressions"])) + defended + 2
    summary = (smoke_run / "reports/smoke/summary.md").read_text()
    assert "amplification" in summary.lower()
    assert "query reduction" in summary.lower()
    queries = df[df.attack_kind == "query"]
    assert set(queries.attack) == {"prgf", "rgf"}
    for _, r in queries.iterrows():
        spent = pd.Series(r.queries_at_success).dropna()
        assert len(r.queries_at_success) == r.n_examples and (spent <= r.query_budget).all()
        assert len(spent) == r.n_success
    prgf = queries[queries.attack == "prgf"]
    assert (prgf.baseline_attack == "rgf").all()
    assert prgf[prgf.source_role == "sibling"].query_amplification.notna().all()
    assert not np.isinf(df.select_dtypes("number").to_numpy(dtype=float)).any()
    assert not re.search(r"[\s|\[(]-?inf\b", summary)  # a value, not the "L-inf" norm
    readings = pd.read_parquet(smoke_run / "results/smoke/queries.parquet")
    assert set(readings.reference) == {"baseline", "independent"}
    assert (readings.ci_low <= readings.ci_high).all()
    for figure in ("transfer_success.png", "accuracy_vs_size.png", "query_success.png"):
        assert (smoke_run / "reports/smoke" / figure).stat().st_size > 10_000
    assert int((smoke_run / "smoke_seconds").read_text()) <= 180


def test_smoke_defends_one_sibling_end_to_end(smoke_run):
    df = pd.read_parquet(smoke_run / "results/smoke/benchmark.parquet")
    attacked = df[df.source_role != "none"]
    assert attacked[["grad_cosine", "agreement", "kl", "cka"]].notna().all().all()
    whitebox = attacked[attacked.source_role == "whitebox"]
    assert (whitebox.grad_cosine - 1).abs().max() < 1e-5 and (whitebox.cka - 1).abs().max() < 1e-5
    defended = df[df.source_role.isin(DEFENDED_ROLES)]
    assert set(defended.source_role) == set(DEFENDED_ROLES)
    assert set(defended.source_id) == {"ptq-w8a8+unpair-l0", "ptq-w8a8+unpair-l5", "ptq-w8a8"}
    references = defended[defended.source_id == "ptq-w8a8"]
    assert set(references.source_role) == set(ADAPTIVE_ROLES)  # each on the undefended sibling
    assert (references.defense == "none").all()
    unpaired = defended[defended.defense == "unpair-l5"]
    assert (unpaired.defense_control == "unpair-l0").all() and (unpaired.defense_lambda == 5).all()
    assert unpaired.control_success_rate.notna().all() and unpaired.undefended_success_rate.notna().all()
    assert unpaired[unpaired.attack == "prgf"].control_query_reduction.notna().all()
    by_role = unpaired[unpaired.attack == "pgd"].groupby("source_role").grad_cosine.first()
    assert by_role["reversed"] == pytest.approx(-by_role["defended"])
    models = pd.read_parquet(smoke_run / "results/smoke/models.parquet")
    unpair = models[(models.role == "defended") & (models.defense == "unpair-l5")].iloc[0]
    assert unpair.similarity_after < unpair.similarity_before - 0.3
    assert unpair.accuracy_cost == pytest.approx(
        models[(models.role == "sibling") & (models.arch == "resnet18")
               & (models.compression == "ptq-w8a8")].test_accuracy.iloc[0] - unpair.test_accuracy)
    extracted = models[models.role == "extracted"]
    assert len(extracted) == 2 and extracted.failed.notna().all()  # defended and undefended
    corr = pd.read_parquet(smoke_run / "results/smoke/correlations.parquet")
    cosine = corr[(corr.metric == "grad_cosine") & (corr.attack == "pgd")].iloc[0]
    assert cosine.n_pairs >= 3 and cosine.ci_low <= cosine.spearman <= cosine.ci_high
    for figure in ("similarity.png", "defense.png", "lambda_sweep.png"):
        assert (smoke_run / "reports/smoke" / figure).stat().st_size > 10_000
    assert "similarity-unpairing" in (smoke_run / "reports/smoke/summary.md").read_text()


def test_smoke_measures_every_compression_family_as_a_product(smoke_run):
    models = pd.read_parquet(smoke_run / "results/smoke/models.parquet")
    siblings = models[models.role == "sibling"]
    assert {"quantization", "unstructured pruning", "structured pruning",
            "distillation"} <= set(siblings.compression_family)
    assert siblings[["size_bytes", "parameters", "agreement_with_full"]].notna().all().all()
    full = models[models.role == "full"].set_index("arch")
    for _, r in siblings.iterrows():
        if r.runtime.startswith("none"):  # sub-8-bit: no CPU kernels to time
            assert pd.isna(r.latency_ms)
        else:
            assert r.latency_ms > 0
        assert r.size_bytes < full.loc[r.arch, "size_bytes"], r.compression
    int8 = siblings[siblings.compression == "ptq-w8a8"]
    assert (int8.runtime.str.startswith("int8") & (int8.deployed_agreement >= 99)).all()
    assert (siblings[siblings.compression == "prune-s50"].parameter_reduction >= 0.4).all()
    assert (siblings[siblings.compression == "prune-u80"].sparsity.sub(0.8).abs() <= 0.01).all()
    fp16 = siblings[siblings.compression == "fp16"]  # the README's worked example
    assert len(fp16) == len(full)
    assert (fp16.set_index("arch").test_accuracy - full.test_accuracy).abs().max() < 1
    bench = pd.read_parquet(smoke_run / "results/smoke/benchmark.parquet")
    sib_rows = bench[bench.source_role == "sibling"]
    assert sib_rows[["source_size_bytes", "source_parameters"]].notna().all().all()
    assert bench[bench.source_role != "sibling"].source_size_bytes.isna().all()


def test_nothing_changed_means_nothing_to_do(smoke_run):
    assert planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")) == {}


def test_attack_parameter_change_reruns_only_attack_and_downstream(smoke_run):
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    cfg["attacks"]["pgd"]["steps"] += 1
    (smoke_run / "config/edited.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/edited.yaml"))
    assert set(jobs) == {"attack", "aggregate", "report", "all"}
    assert jobs["attack"] == sum(1 for a, *_ in attack_sources(cfg) if a == "pgd")


def test_attack_code_edit_reruns_only_attack_and_downstream(smoke_run):
    code = smoke_run / "src/siblings/stages/attack.py"
    original = code.read_text()
    code.write_text(original + "\n# a change to the attack code\n")
    try:
        jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml"))
    finally:
        code.write_text(original)
    assert set(jobs) == {"attack", "aggregate", "report", "all"}


BAD_CONFIGS = {
    "unknown arch": ({"archs": {"resnet9000": {}}}, "unknown architecture 'resnet9000'; allowed:"),
    "unknown compression": ({"compressions": {"zip": {"method": "zip"}}},
                            "unknown compression method 'zip'; allowed: channel-prune, kd, prune, ptq, qat"),
    "unknown dataset": ({"dataset": {"name": "mnist3d"}}, "unknown dataset 'mnist3d'; allowed:"),
    "negative eps": ({"attacks": {"pgd": {"method": "pgd", "eps": [-0.1]}}},
                     "attacks.pgd.eps.0"),
    "non-numeric eps": ({"attacks": {"pgd": {"method": "pgd", "eps": ["big"]}}},
                        "'big' is not of type 'number'"),
    "unknown key": ({"trainn": {"epochs": 1}}, "'trainn' was unexpected"),
    "dataset root": ({"dataset": {"name": "fashion-mnist", "root": "/nonexistent/fmnist"}},
                     "config key 'dataset.root': /nonexistent/fmnist is not a folder"),
    "pickle checkpoint": ({"archs": {"resnet18": {"width": 0.25,
                                                  "weights": {"full": "config/smoke.yaml"}}}},
                          "config key 'archs.resnet18.weights.full': refusing to load"),
    "published weights that cannot fit": (
        {"archs": {"resnet18": {"width": 0.25, "weights": {"independent": "pretrained"}}}},
        "config key 'archs.resnet18.weights.independent': resnet18 cannot start from "
        "published weights: they fit width 1.0 only, not 0.25"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_fails_before_any_job(tmp_path, case):
    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    override, message = BAD_CONFIGS[case]
    cfg.update(override)
    (work / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(work, "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (work / "results").exists()


def test_missing_dataset_fails_cleanly_and_lists_places(tmp_path):
    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    cfg["dataset"] = {"name": "cifar10", "root": str(tmp_path), "download": False}
    (work / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    planned = snakemake(work, "-n", "--configfile", "config/bad.yaml")
    assert planned.returncode == 0, planned.stderr  # a login node without the data plans
    result = snakemake(work, "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "dataset 'cifar10' not found" in out and str(tmp_path / "cifar-10-batches-bin") in out
    assert not (work / "results").exists()  # refused before any job


@pytest.mark.skipif(torch_cuda(), reason="a CUDA device is visible here: 'cuda' is valid")
def test_cuda_where_none_is_visible_fails_before_any_job(tmp_path):
    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    (work / "config/bad.yaml").write_text(yaml.safe_dump({**cfg, "device": "cuda"}))
    result = snakemake(work, "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert "config key 'device': 'cuda' was asked for" in result.stdout + result.stderr
    assert not (work / "results").exists()


def dummy_dataset_root(kind: str, folder: Path) -> Path:
    """An empty stand-in a planner accepts: CIFAR-10's binary files, or an image folder."""
    if kind == "cifar10":
        bins = folder / "cifar-10-batches-bin"
        bins.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (bins / f"{name}.bin").touch()
    else:
        for part in ("train", "val"):
            for c in range(1000):
                (folder / part / f"n{c:08d}").mkdir(parents=True)
    return folder


def planned_pairs(result, rule: str) -> set[tuple[str, str]]:
    """(arch, compression) of every planned job of ``rule`` in a dry run's job listing."""
    jobs = re.findall(rf"rule {rule}:\n(?:    .*\n)*?    wildcards: arch=([\w.-]+), "
                      rf"compression=([\w.-]+)", result.stdout + result.stderr)
    return set(jobs)


@pytest.mark.parametrize("name", ["full", "cifar10", "imagenet", "zoo"])
def test_paper_scale_configs_plan_nineteen_architectures_quickly_and_only_supported_pairs(
        tmp_path, name):
    from siblings.config import validate
    from siblings.support import Support

    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / f"config/{name}.yaml").read_text())
    if cfg["dataset"]["name"] != "fashion-mnist":
        cfg["dataset"]["root"] = str(dummy_dataset_root(cfg["dataset"]["name"], tmp_path / "data"))
    (work / "config/planned.yaml").write_text(yaml.safe_dump(cfg))
    start = time.time()
    result = snakemake(work, "-n", "--configfile", "config/planned.yaml")
    seconds = time.time() - start
    jobs = planned_jobs(result)
    assert len(cfg["archs"]) == 19 and jobs["train"] == 2 * 19 and jobs["similarity"] == 19
    assert jobs["attack"] == expected_attack_jobs(cfg)
    support = Support(validate(cfg, ROOT / "workflow/schemas/config.schema.yaml"))
    compressed = planned_pairs(result, "compress")
    assert len(compressed) == jobs["compress"]
    assert all(support.ok(arch, "compression", c) for arch, c in compressed)
    assert jobs["compress"] == sum(support.ok(a, "compression", c) for a in cfg["archs"]
                                   for c in cfg["compressions"])
    assert seconds < 10, f"planning {name} took {seconds:.1f} s"


def test_a_pair_an_architecture_rules_out_is_left_out_of_the_plan(tmp_path):
    work = project_copy(tmp_path)
    with open(work / "src/siblings/models.py", "a") as f:
        f.write("\nARCHITECTURES._items['resnet18'] = replace(ARCHITECTURES.get('resnet18'), "
                "unsupported={'channel_pruning': 'a test says so', 'width': 'no knob here', "
                "'double_backward': 'none either'})\n")
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    cfg["archs"]["resnet18"]["width"] = 1.0  # without a width knob, only 1.0 is valid
    (work / "config/unsupported.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(work, "-n", "--configfile", "config/unsupported.yaml")
    jobs = planned_jobs(result)
    assert planned_pairs(result, "compress") == {("resnet18", "ptq-w8a8"),
                                                 ("resnet18", "prune-u80")}
    assert "defend" not in jobs and "extract" not in jobs
    for left_out in ("compression prune-s50: resnet18 has no channel_pruning",
                     "compression kd-narrow: resnet18 has no width",
                     "defense unpair-l5: resnet18 has no double_backward"):
        assert f"left out of the plan: resnet18 x {left_out}" in result.stderr
