"""``mupbench-status SWEEP_DIR``: how far a sweep is.

Reads the sweep's ``multirun.yaml`` (Hydra writes it into the sweep dir at every launch) to
know the planned grid points and where each one's run dir is, then each run dir's record (and,
for runs under way, their metrics and checkpoint). Prints, per setup × parametrization, how many
points completed, diverged, failed, are running or interrupted (started, no record yet) and
pending, a progress bar and an ETA from the measured steps/s.

    mupbench-status outputs/mlp_california
    mupbench-status outputs/mlp_california --json      # the same numbers, machine-readable
    mupbench-status outputs/mlp_california --watch 60  # refresh every minute until done

The library behind it is :mod:`mupbench.sweep.progress`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NoReturn

from mupbench.sweep.progress import SweepDirError, as_json, load_sweep, render

CLEAR = "\033[H\033[2J"  # cursor home, clear screen: --watch on a terminal is a live display


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A bad argument in one line (argparse's own form adds the usage line before it)."""
        print(f"{self.prog}: error: {message} (--help lists the options)", file=sys.stderr)
        sys.exit(2)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: give a number of seconds > 0 (leave --watch out to print once)")
    return value


def main(argv: list[str] | None = None) -> None:
    ap = _Parser(prog="mupbench-status", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a multirun's sweep dir (the one holding multirun.yaml)")
    ap.add_argument("--json", action="store_true", help="print the counts and the ETA as JSON")
    ap.add_argument("--watch", type=_seconds, metavar="S", help="refresh every S seconds (> 0) until the sweep is done")
    args = ap.parse_args(argv)
    try:
        while True:
            _, points = load_sweep(args.sweep_dir)
            live = args.watch and not args.json and sys.stdout.isatty()  # a terminal: redraw in place
            print((CLEAR if live else "") + (json.dumps(as_json(args.sweep_dir, points), indent=2) if args.json
                                             else render(args.sweep_dir, points)), flush=True)
            if not args.watch or all(p.state not in ("pending", "started") for p in points):
                break
            time.sleep(args.watch)
            if not live:
                print()  # a log (not a terminal): one table after another
    except SweepDirError as e:
        sys.exit(f"mupbench-status: error: {e}")
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()


if __name__ == "__main__":
    main()
