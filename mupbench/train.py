"""The one entrypoint: ``python -m mupbench.train`` (or ``mupbench-train``), a single run or,
with ``-m``, one point of a multirun (the launcher decides; mupbench.sweep). Each run leaves
result.json and metrics.csv in its run dir (mupbench.records), through mupbench.lifecycle.

Exit status: 0 for completed and diverged runs (divergence is a result), non-zero for errors.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mupbench.cli import hydra_app


def _task(cfg: DictConfig) -> None:
    from mupbench.assemble import describe_params
    from mupbench.config import validate
    from mupbench.lifecycle import run_point

    if cfg.print_params:
        validate(cfg)
        print(describe_params(cfg))
        return
    run_point(cfg, Path(HydraConfig.get().runtime.output_dir))


main = hydra_app(_task, "config")


if __name__ == "__main__":
    main()
