"""mupbench-export SWEEP_DIR --to tensorboard|mlflow|wandb: log a sweep's records to a tracker
afterwards (wiring only; the work is mupbench.trackers.export)."""

from __future__ import annotations

import argparse
import logging
import sys

from mupbench.trackers.config import BACKENDS
from mupbench.trackers.core import TrackerError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mupbench-export",
        description="Log every run record under SWEEP_DIR (result.json + metrics.csv) to an experiment tracker, "
                    "as `logger=...` would have during the sweep. Running it again adds nothing twice. "
                    "Nothing leaves the machine unless asked: TensorBoard and MLflow write into SWEEP_DIR, "
                    "W&B runs are offline (`wandb sync` uploads them) unless --mode online.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep dir, e.g. outputs/<name>")
    p.add_argument("--to", required=True, choices=BACKENDS, help="the tracker")
    p.add_argument("--dir", help="tensorboard: the log dir (default SWEEP_DIR/tensorboard); wandb: where wandb/ goes (default SWEEP_DIR)")
    p.add_argument("--tracking-uri", help="mlflow: the tracking store (default the file store SWEEP_DIR/mlruns)")
    p.add_argument("--experiment", help="mlflow: the experiment name (default SWEEP_DIR's name)")
    p.add_argument("--mode", choices=("offline", "online"), help="wandb: offline (default) or online")
    p.add_argument("--project", help="wandb: the project (default mupbench)")
    p.add_argument("--entity", help="wandb: the entity (default your default entity)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from mupbench.trackers.export import OPTIONS, export_sweep

    given = {k: getattr(args, k) for k in ("dir", "tracking_uri", "experiment", "mode", "project", "entity") if getattr(args, k)}
    wrong = [k for k in given if k not in OPTIONS[args.to]]
    if wrong:
        sys.exit(f"mupbench-export: error: --{wrong[0].replace('_', '-')} does not apply to --to {args.to}")
    try:
        result = export_sweep(args.sweep_dir, args.to, given)
    except (TrackerError, ValueError) as e:
        sys.exit(f"mupbench-export: error: {e}")
    for line in result.skipped:
        print(f"not exported: {line}")
    for line in result.failed:
        print(f"failed: {line}", file=sys.stderr)
    print(result.summary(args.to))
    if result.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
