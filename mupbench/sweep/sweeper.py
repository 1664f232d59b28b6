"""The default sweeper (conf/config.yaml): Hydra's basic sweeper — the same keys, grid and job
order — with a different check before launching.

Hydra checks that every job composes (about half a second a job: 45 minutes for the MLP grid's
5,120 jobs on 2 cores) and checks no values. This one composes one job per group of jobs that
differ only in plain seed / k values, and validates every job's values on it
(``checks.sweep_problems``), all batches before the first: a bad point anywhere in the grid
stops the sweep before anything runs or is written, with one line per distinct problem. What
the grouping skips could not fail composition: a seed that is not an int, or a k that is not a
number, is not a plain value, so its job is composed on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mupbench.sweep.checks import check_or_refuse, mark_checked


class BatchedSweeperImpl:
    """Mixed into Hydra's BasicSweeper by ``hydra_plugins.mupbench_batched.GroupedBasicSweeper``."""

    _all_checked = False

    def _compose(self, overrides: Sequence[str]) -> Any:
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def sweep(self, arguments: list[str]) -> Any:
        """Check every job of every batch, then sweep as Hydra's basic sweeper does (it writes
        multirun.yaml, then launches batch after batch)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = self._parse_config()
        params.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        batches = self.split_arguments(parser.parse_overrides(params), None)
        jobs = [job for batch in batches for job in batch]
        check_or_refuse(jobs, lambda i: self._compose(jobs[i]))
        self._all_checked = True
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if not self._all_checked:  # called outside sweep(): check this batch alone
            check_or_refuse(batch, lambda i: self._compose(batch[i]))
        mark_checked(self.launcher, batch)
