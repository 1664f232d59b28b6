"""``python -m mupbench.coord_check [overrides]`` (conf/coord_check.yaml): the coordinate check of
SPEC §6 (mupbench.coordinates); writes coord.csv, slopes.csv and figure1.png/.pdf into its run
dir and prints the slopes. ``coord.axis=depth`` runs it over ``coord.blocks`` at a fixed
model.width_mult, for each depth rule of ``coord.depth_alphas`` (SPEC-AXES §3)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from mupbench.cli import hydra_app


def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from mupbench.assemble import set_threads
    from mupbench.coordinates import run_and_report

    out = Path(cfg.coord.out) if cfg.coord.out else Path(HydraConfig.get().runtime.output_dir)
    set_threads(cfg, 0)
    run_and_report(cfg, out)


main = hydra_app(_task, "coord_check")


if __name__ == "__main__":
    sys.exit(main())
