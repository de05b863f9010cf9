"""End to end: config/smoke.yaml through Snakemake, then exact reruns and clean failures."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from conftest import ROOT, project_copy, readme_example, snakemake
from siblings.plan import Plan
from siblings.roles import ADAPTIVE_ROLES, DEFENDED_ROLES


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


def smoke_plan(work: Path, config: str = "config/smoke.yaml") -> Plan:
    return Plan(yaml.safe_load((work / config).read_text()))


def planned_rows(plan: Plan) -> dict[str, int]:
    """Benchmark rows per source role the plan promises: one per source and eps of every
    attack job (tests/test_plan.py checks the plan itself)."""
    rows: Counter = Counter()
    for arch in plan.archs:
        for attack in plan.attacks:
            for role in plan.attack_roles(attack):
                rows[role] += (len(plan.role_sources(arch, attack, role))
                               * len(plan.config["attacks"][attack]["eps"]))
    return {role: n for role, n in rows.items() if n}


def attack_jobs_of(plan: Plan, attack: str) -> int:
    return sum(f"/{attack}/" in table for table in plan.attack_tables)


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table (empty when nothing to do)."""
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def add_readme_compression(work: Path) -> None:
    """Applies the README's worked example (a user's own compression) to a project copy."""
    (work / "src/siblings/extensions/fp16.py").write_text(readme_example("compression",
                                                                          "python"))
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    cfg["compressions"].update(yaml.safe_load(readme_example("compression-config", "yaml")))
    (work / "config/smoke.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke workflow, with the README's example compression added as a user would; the
    example is registered in this process too, so the plans tests make here include it."""
    from siblings.compress import COMPRESSIONS

    work = project_copy(tmp_path_factory.mktemp("project"))
    add_readme_compression(work)
    start = time.time()
    result = snakemake(work, "--configfile", "config/smoke.yaml")
    (work / "smoke_seconds").write_text(f"{time.time() - start:.0f}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    exec(compile((work / "src/siblings/extensions/fp16.py").read_text(), "fp16.py", "exec",
                 dont_inherit=True), {"__name__": "fp16"})
    yield work
    COMPRESSIONS._items.pop("fp16")


def test_smoke_produces_typed_parquet_and_report(smoke_run):
    path = smoke_run / "results/smoke/benchmark.parquet"
    schema = pq.read_schema(path)
    assert {col: str(schema.field(col).type) for col in EXPECTED_TYPES} == EXPECTED_TYPES
    df = pd.read_parquet(path)
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    assert df.source_role.value_counts().to_dict() == planned_rows(smoke_plan(smoke_run))
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
    from siblings.figures import FIGURES

    for figure in FIGURES:  # each for the HTML report, and as a PDF for papers
        assert (smoke_run / f"reports/smoke/{figure}.png").stat().st_size > 10_000
        assert (smoke_run / f"reports/smoke/{figure}.pdf").read_bytes()[:5] == b"%PDF-"
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


SETUP_FILES = ("Makefile", "pyproject.toml", "constraints.txt")  # what `make setup` reads


def with_make(work: Path, target: str) -> None:
    """What `make` reads, copied into ``work`` with its times (make compares them with the
    venv's stamp); skips where `make setup` has not installed this venv."""
    stamp = VENV / ".installed"
    if not stamp.exists() or any(stamp.stat().st_mtime < (ROOT / name).stat().st_mtime
                                 for name in SETUP_FILES[1:]):
        pytest.skip(f"`make setup` has not installed this venv: `make {target}` would install")
    for name in SETUP_FILES:
        shutil.copy2(ROOT / name, work / name)


def same_runs(first: Path, second: Path) -> list[str]:
    """Where two smoke runs differ: every result table value for value (wall-clock columns
    aside), and every tensor of every weight and data file exactly."""
    from safetensors.torch import load_file

    from siblings.compare import compare

    lines, equal = compare(first / "results/smoke", second / "results/smoke")
    problems = [] if equal else lines
    files = sorted(p.relative_to(first) for p in (first / "results/smoke").rglob("*.safetensors"))
    assert len(files) >= 10
    for rel in files:
        a, b = load_file(first / rel), load_file(second / rel)
        if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
            problems.append(f"{rel}: tensors differ")
    return problems


# The README's resume instruction, run as written: a killed run resumes with its own command.
RESUME = ["make", "bench", "CONFIG=config/smoke.yaml"]
KILL_POINTS = ("train", "compress", "defend", "attack", "aggregate")
RULE_OF_OUTPUT = [  # an output path -> the rule that writes it
    (r"/data\.", "data"), (r"/full/", "train"), (r"/sibling/", "compress"),
    (r"/defended/", "defend"), (r"/extracted/", "extract"), (r"/attacks/", "attack"),
    (r"/similarity/", "similarity"), (r"^results/smoke/[^/]+$", "aggregate"),
    (r"^reports/", "report"),
]


def running_rules(work: Path, since: float) -> set[str]:
    """The rules with a job started at ``since`` or later and not finished: Snakemake's
    incomplete markers (base64 output paths, split into parts of at most a file name's
    length), read back. A killed job's marker stays until the job starts again, when
    Snakemake rewrites it."""
    import base64

    rules = set()
    root = work / ".snakemake/incomplete"
    for marker in (p for p in root.rglob("*") if p.is_file() and p.name != "migration_underway"
                   and p.stat().st_mtime >= since):
        encoded = "".join(part.lstrip("@") for part in marker.relative_to(root).parts)
        output = base64.urlsafe_b64decode(encoded).decode()
        rules |= {rule for pattern, rule in RULE_OF_OUTPUT if re.search(pattern, output)}
    return rules


VENV = Path(sys.executable).parents[1]  # this venv, so `make` finds its set-up done


def run_env(work: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(work / "src"), "VENV": str(VENV)}


def start_run(work: Path, log) -> subprocess.Popen:
    return subprocess.Popen(RESUME, cwd=work, env=run_env(work), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def released(lock: Path, timeout: float = 30.0) -> None:
    """Waits until the killed run's processes have finished exiting: the kernel drops their
    run lock then (siblings.run itself waits a few seconds for that)."""
    import fcntl

    deadline = time.time() + timeout
    with open(lock) as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.time() < deadline, "the killed run still holds its lock"
                time.sleep(0.1)


def test_a_run_killed_at_five_points_resumes_with_its_own_command_to_the_same_numbers(
        smoke_run, tmp_path):
    """A second smoke run from nothing, killed during train, compress, defend, attack and
    aggregate and resumed each time with `make bench CONFIG=config/smoke.yaml`, must equal
    the first, uninterrupted run in every table and weight: resumption and determinism in
    one run (a separate uninterrupted second run cost the suite two more minutes)."""
    work = project_copy(tmp_path)
    add_readme_compression(work)
    with_make(work, "bench")
    log_path = tmp_path / "runs.log"
    with open(log_path, "w") as log:
        for point in KILL_POINTS:
            started = time.time()
            run = start_run(work, log)
            deadline = started + 300
            while point not in running_rules(work, started):
                assert run.poll() is None, f"the run ended before a {point} job started"
                assert time.time() < deadline, f"no {point} job within 300 s"
                time.sleep(0.1)
            time.sleep(0.3 if point == "aggregate" else 1.0)  # into the job
            if point == "defend":  # a second run while this one lives is refused, touching nothing
                live = subprocess.run(RESUME, cwd=work, capture_output=True, text=True,
                                      env=run_env(work))
                assert live.returncode != 0 and "another run is live" in live.stderr
                assert point in running_rules(work, started) and run.poll() is None
            os.killpg(run.pid, signal.SIGKILL)  # the whole tree: make, Snakemake, its jobs
            run.wait()
            released(work / ".snakemake/siblings-run.lock")
            assert point in running_rules(work, started), f"the {point} job ended before the kill"
            assert any((work / ".snakemake/locks").iterdir()), "the kill left no lock to clear"
        final = start_run(work, log)
        assert final.wait(timeout=600) == 0, log_path.read_text()[-5000:]
    output = log_path.read_text()
    assert output.count("cleared the lock of a run that died") == len(KILL_POINTS)
    assert same_runs(smoke_run, work) == []


def test_nothing_changed_means_nothing_to_do(smoke_run):
    assert planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")) == {}


def test_attack_parameter_change_reruns_only_attack_and_downstream(smoke_run):
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    cfg["attacks"]["pgd"]["steps"] += 1
    (smoke_run / "config/edited.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/edited.yaml"))
    assert set(jobs) == {"attack", "aggregate", "report", "all"}
    assert jobs["attack"] == attack_jobs_of(Plan(cfg), "pgd")


@contextmanager
def edited(work: Path, path: str, old: str, new: str, count: int = 1):
    """The project copy with ``old`` replaced by ``new`` in ``path``, restored afterwards."""
    file = work / path
    original = file.read_text()
    assert original.count(old) >= count, f"{path} lost {old!r}"
    file.write_text(original.replace(old, new, count))
    try:
        yield
    finally:
        file.write_text(original)


def planned_now(work: Path, config: str = "config/smoke.yaml") -> dict[str, int]:
    return planned_jobs(snakemake(work, "-n", "--configfile", config))


NEW_METHOD = '''

COMPRESSIONS.register("copy")(Compression(_no_structure_change, lambda model, job: {},
                                          _float_deploy, "none"))
'''


def test_adding_a_compression_method_plans_only_its_jobs(smoke_run):
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    cfg["compressions"]["copy"] = {"method": "copy"}
    (smoke_run / "config/added.yaml").write_text(yaml.safe_dump(cfg))
    with open(smoke_run / "src/siblings/compress.py") as f:
        original = f.read()
    (smoke_run / "src/siblings/compress.py").write_text(original + NEW_METHOD)
    try:
        jobs = planned_now(smoke_run, "config/added.yaml")
    finally:
        (smoke_run / "src/siblings/compress.py").write_text(original)
    # no attack or similarity of the smoke run takes every sibling: only the new sibling,
    # and the tables that list every model
    assert jobs == {"compress": 1, "aggregate": 1, "report": 1, "all": 1}


def test_editing_one_attack_plans_only_its_jobs(smoke_run):
    pgd_jobs = attack_jobs_of(smoke_plan(smoke_run), "pgd")
    with edited(smoke_run, "src/siblings/attacks/transfer.py",
                '"""Projected gradient descent (Madry et al., 2018)."""',
                '"""Projected gradient descent (Madry et al., 2018)."""\n\n    edited = True'):
        jobs = planned_now(smoke_run)
    assert jobs == {"attack": pgd_jobs, "aggregate": 1, "report": 1, "all": 1}


def test_editing_the_report_plans_only_the_report(smoke_run):
    with edited(smoke_run, "src/siblings/report.py", "dpi=150,", "dpi=151,"):
        assert planned_now(smoke_run) == {"report": 1, "all": 1}


def test_a_comment_or_docstring_edit_plans_nothing(smoke_run):
    with edited(smoke_run, "src/siblings/compress.py", "\n\n\n", "\n\n# a comment\n\n", 3), \
            edited(smoke_run, "src/siblings/attacks/query.py", "Prior-guided random gradient-free",
                   "Prior-guided random-gradient-free (edited)"), \
            edited(smoke_run, "src/siblings/stages/attack.py", '"""Runs attack',
                   '"""Edited. Runs attack'):
        assert planned_now(smoke_run) == {}


def test_a_corrupted_input_stops_its_job_naming_the_file_and_the_command(smoke_run, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(smoke_run, work, symlinks=True)
    weights = "results/smoke/fashion-mnist/models/resnet18/sibling/ptq-w8a8.safetensors"
    data = (work / weights).read_bytes()
    (work / weights).write_bytes(data[: len(data) // 2])  # a full disk, a bad copy
    table = work / "results/smoke/fashion-mnist/attacks/resnet18/pgd/sibling.parquet"
    table.unlink()
    result = snakemake(work, str(table.relative_to(work)), "--configfile", "config/smoke.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and not table.exists()
    assert (f"{weights} is corrupted (its SHA-256 differs from the one recorded when it was "
            "written: truncated or altered since), so it is not used. Delete it and rerun "
            "`make bench CONFIG=config/smoke.yaml`: that regenerates it") in output
    assert "Traceback" not in output


# Through Snakemake, before any job: one refusal of the validation (test_config.py checks
# every such refusal in-process), one size the dataset cannot supply, and each of the
# planner's checks of what the config points at.
BAD_CONFIGS = {
    "misspelt knob": ({"attacks": {"pgd": {"method": "pgd", "eps": [0.1], "stpes": 3}}},
                      "config key 'attacks.pgd.stpes': attack method 'pgd' takes no knob "
                      "'stpes' (did you mean 'steps'?)"),
    "too many images": ({"similarity": {"n_examples": 600}},
                        "config key 'similarity.n_examples': 600 exceeds the 500 test images"),
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
    assert "Traceback" not in result.stderr and 'File "' not in result.stderr  # the key alone
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
    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / f"config/{name}.yaml").read_text())
    if cfg["dataset"]["name"] != "fashion-mnist":
        cfg["dataset"]["root"] = str(dummy_dataset_root(cfg["dataset"]["name"], tmp_path / "data"))
    (work / "config/planned.yaml").write_text(yaml.safe_dump(cfg))
    start = time.time()
    result = snakemake(work, "-n", "--configfile", "config/planned.yaml")
    seconds = time.time() - start
    jobs = planned_jobs(result)
    plan = Plan(cfg)
    assert jobs == Counter(job.rule for job in plan.jobs())  # the rules wire the plan as is
    assert len(cfg["archs"]) == 19 and jobs["train"] == 2 * 19 and jobs["similarity"] == 19
    compressed = planned_pairs(result, "compress")
    assert len(compressed) == jobs["compress"]
    assert all(plan.support.ok(arch, "compression", c) for arch, c in compressed)
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


def test_the_claims_block_recomputes_from_the_parquet_with_its_printed_filters(smoke_run):
    from claims_check import SECTION, recompute

    summary = (smoke_run / "reports/smoke/summary.md").read_text()
    block = summary.split("<!-- claims:begin -->")[1].split("<!-- claims:end -->")[0]
    assert len(SECTION.findall(block)) == block.count("```python") == 4  # every table
    pairs = recompute(block, smoke_run)
    assert len(pairs) > 10
    assert [(printed, again) for printed, again in pairs if printed != again] == []


def test_make_report_renders_every_figure_in_a_browser(smoke_run, tmp_path):
    """The README's `make report`, then the HTML opened in headless Chromium: every figure
    shows (a screenshot that is not blank), its caption quotes the run's settings, and the
    page logs no console error."""
    from browser import chromium, open_figures

    if chromium() is None:
        pytest.skip("no chromium: `make test` installs Debian's chromium where it runs as "
                    "root with apt; here it could not")
    pytest.importorskip("playwright", reason="playwright is in the test extra: `make setup`")
    with_make(smoke_run, "report")
    made = subprocess.run(["make", "report", "CONFIG=config/smoke.yaml"], cwd=smoke_run,
                          env=run_env(smoke_run), capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, (made.stdout + made.stderr)[-3000:]
    from siblings.figures import FIGURES

    seen = open_figures(smoke_run / "reports/smoke/report.html",
                        {f"{name}.png": c for name, c in FIGURES.items()}, tmp_path)
    print("figures seen (screenshot px):", seen.shots)
    assert set(seen.shots) == {f"{name}.png" for name in FIGURES}
    assert all(w > 400 and h > 150 for w, h in seen.shots.values())
    assert seen.errors == []
    pgd = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())["attacks"]["pgd"]
    assert (f"smallest eps {min(pgd['eps']):g}, {pgd['n_examples']} test images"
            in seen.text["frontier.png"])
