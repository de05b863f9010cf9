"""Trains every architecture of a config once (seed 0) and prints the README's architecture table.

Not a test: it takes tens of minutes on a laptop. Usage:
    .venv/bin/python benchmarks/zoo.py --config config/full.yaml --epochs 1 [--archs a b]
Weights land in results/zoo/; rerunning skips architectures already trained with the
same settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from siblings.stages import data, train
from siblings.cards import read_card
from siblings.config import validate
from siblings.models import ARCHITECTURES
from siblings.fingerprint import fingerprints

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results/zoo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "config/full.yaml"))
    parser.add_argument("--epochs", type=float, default=None, help="override train.epochs")
    parser.add_argument("--archs", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cfg = validate(yaml.safe_load(Path(args.config).read_text()),
                   ROOT / "workflow/schemas/config.schema.yaml")
    params = {**cfg["train"], **({"epochs": args.epochs} if args.epochs else {})}
    ds = cfg["dataset"]
    code = fingerprints()
    data_path = OUT / "data.safetensors"
    if not data_path.exists():
        data.run(str(data_path), ds["name"], ds["root"], ds["download"], ds["calib_size"],
                 ds["split_seed"], None, None, code.code_hash("data", dataset=ds["name"]))
    rows = []
    for arch in args.archs or list(cfg["archs"]):
        width = cfg["archs"][arch]["width"]
        out = OUT / f"{arch}-e{params['epochs']:g}.safetensors"
        if not out.exists():
            train.run(str(data_path), str(out), arch, width, 0, params,
                      code.code_hash("train", architecture=arch),
                      log_file=str(OUT / f"{arch}.log"), threads=args.threads)
        card = read_card(out.with_suffix(".json"))
        entry = ARCHITECTURES.get(arch)
        rows.append(f"| {arch} | {entry.family} | {entry.library} | {width:g} "
                    f"| {card.parameters / 1e6:.2f}M "
                    f"| {card.test_accuracy:.2f} | {params['epochs']:g} "
                    f"| {card.seconds:.0f} |")
        print(rows[-1], flush=True)
    print("\n| architecture | family | factory | width | parameters | test acc. (%) | epochs "
          "| train s |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
