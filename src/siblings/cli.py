"""``siblings``: the benchmark's command line (also ``python -m siblings``).

    siblings run CONFIG [SNAKEMAKE OPTIONS]   run a config (resumes after any kill)
    siblings check CONFIG                     validate it and show its plan, running nothing
    siblings components [KIND]                every registered component and its knobs
    siblings compare RESULTS_A RESULTS_B      two runs' tables, value for value
    siblings claims SUMMARY [--into README]   a run's claims block, or copy it into a file

Run it from the checkout's root, where ``workflow/`` is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

import yaml

DEFAULT_PROFILE = "workflow/profiles/default"


def _plan(config: Path):
    """The plan of ``config``; raises ConfigError naming every offending key."""
    from siblings.plan import Plan

    return Plan(yaml.safe_load(config.read_text()))


def run(args: argparse.Namespace) -> int:
    """Snakemake on the config through ``siblings.run`` (which clears a dead run's lock), with
    the laptop profile unless the options name a workflow profile."""
    from siblings.artifacts import RERUN_VARIABLE
    from siblings.run import main as run_snakemake

    if not Path("workflow/Snakefile").is_file():
        print("siblings run: no workflow/Snakefile here; run it from the checkout's root",
              file=sys.stderr)
        return 2
    options = list(args.snakemake)
    if "--workflow-profile" not in options:
        options = ["--workflow-profile", DEFAULT_PROFILE, *options]
    os.environ.setdefault(RERUN_VARIABLE, shlex.join(["siblings", "run", str(args.config),
                                                      *args.snakemake]))
    return run_snakemake([*options, "--configfile", str(args.config)])


def check(args: argparse.Namespace) -> int:
    """What a run would refuse, before it starts: the config, what it points at, the
    device; then the plan's jobs per stage and the pairs it leaves out."""
    from siblings.config import ConfigError
    from siblings.device import DeviceError, check_available
    from siblings.inputs import check_inputs

    try:
        plan = _plan(args.config)
        check_inputs(plan.config)
        check_available(plan.config["device"])
    except (ConfigError, DeviceError) as err:
        print(err, file=sys.stderr)
        return 2
    jobs = Counter(job.rule for job in plan.jobs())
    print(f"{args.config}: valid; run '{plan.config['name']}' plans {sum(jobs.values())} jobs")
    for rule, n in jobs.items():
        print(f"  {rule:<11} {n}")
    for verdict in plan.support.left_out():
        print(f"left out: {verdict.arch} x {verdict.kind} {verdict.component}: {verdict.reason}")
    return 0


def components(args: argparse.Namespace) -> int:
    from siblings.config_doc import KINDS, components_markdown

    if args.kind and args.kind not in KINDS:
        print(f"siblings components: no kind '{args.kind}'; kinds: {', '.join(KINDS)}",
              file=sys.stderr)
        return 2
    print(components_markdown(args.kind))
    return 0


# Subcommands whose own module parses their arguments (and answers their --help).
DELEGATED = {"compare": ("siblings.compare", "compare two runs' tables value for value"),
             "claims": ("siblings.claims", "print a run's claims block or copy it into a file")}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="siblings", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run a config with Snakemake (resumes after any kill)",
                       description="Runs CONFIG with Snakemake; options after it go to "
                                   "Snakemake (e.g. --cores 16, -n, --workflow-profile "
                                   "workflow/profiles/slurm).")
    p.add_argument("config", type=Path)
    p.add_argument("snakemake", nargs=argparse.REMAINDER, help="Snakemake options")
    p.set_defaults(func=run)
    p = sub.add_parser("check", help="validate a config and show its plan, running nothing")
    p.add_argument("config", type=Path)
    p.set_defaults(func=check)
    p = sub.add_parser("components", help="list the registered components and their knobs")
    p.add_argument("kind", nargs="?", help="only this kind (architectures, datasets, "
                                           "compressions, attacks, defenses, similarity)")
    p.set_defaults(func=components)
    for name, (_, what) in DELEGATED.items():
        sub.add_parser(name, help=what, add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
