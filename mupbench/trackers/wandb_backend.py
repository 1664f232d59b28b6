"""Weights & Biases: one run per point, offline unless ``logger.wandb.mode=online`` (offline runs
land in ``<sweep dir>/wandb`` and ``wandb sync`` uploads them later). Runs are grouped the W&B
way: ``group`` = (setup, parametrization, optimizer, ζ, k), a seed band; ``job_type`` =
(setup, parametrization, optimizer, k), a width family; the resolved config is the run config,
each evaluation a history row at its step, the outcome the summary. A run's id is derived from
its run dir and config, so a resumed run continues the same W&B run."""

from __future__ import annotations

import os
from pathlib import Path

from mupbench.trackers.core import Backend
from mupbench.trackers.identity import RunInfo, final_metrics

MODES = ("offline", "online", "disabled")
MAX_NAME = 64  # W&B's limit for group and job_type
_LIVE: dict = {}  # run id -> this process's open wandb Run


def wandb_dir(run: RunInfo, opts: dict) -> Path:
    return Path(opts.get("dir") or run.sweep_dir).expanduser().resolve()


def _short(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 9] + "~" + __import__("hashlib").sha1(text.encode()).hexdigest()[:8]


def logged_in() -> bool:
    """Whether W&B has credentials without asking: WANDB_API_KEY, an identity token, or a netrc entry."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class Wandb(Backend):
    name = "wandb"

    @staticmethod
    def destination(run: RunInfo, opts: dict) -> str:
        mode = opts.get("mode") or "offline"
        where = wandb_dir(run, opts) if mode == "offline" else f"{opts.get('entity') or ''}/{opts.get('project')}"
        return f"wandb:{mode}:{where}:{opts.get('project') or 'mupbench'}"

    def start(self) -> None:
        mode = self.opts.get("mode") or "offline"
        if mode not in MODES:
            raise ValueError(f"logger.wandb.mode={mode!r}: choose one of {', '.join(MODES)}")
        if mode == "online" and not logged_in():  # else wandb would prompt for a key, from a background thread
            raise RuntimeError("logger.wandb.mode=online but this machine is not logged in to W&B: "
                               "run `wandb login` or set WANDB_API_KEY (or log offline and `wandb sync` later)")
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # wandb's crash reports go to the internet
        import wandb

        directory = wandb_dir(self.run, self.opts)
        directory.mkdir(parents=True, exist_ok=True)
        r = self.run.record
        run_id = self.run.run_id(self.destination(self.run, self.opts))
        if run_id in _LIVE:  # left open by an earlier tracker of this run dir in this process (a retried member)
            _LIVE.pop(run_id).finish(exit_code=1)
        settings = wandb.Settings(console="off", x_disable_stats=True, x_disable_machine_info=True, save_code=False,
                                  disable_git=True, disable_job_creation=True, silent=True, x_save_requirements=False)
        self.wb = wandb.init(
            mode=mode, dir=str(directory), project=self.opts.get("project") or "mupbench", entity=self.opts.get("entity"),
            id=run_id, name=self.run.title,
            group=_short(self.run.group), job_type=_short(self.run.family),
            tags=[str(t) for t in self.opts.get("tags") or []] + [str(r.get("parametrization")), str(r.get("setup"))],
            config=self.run.config, notes=f"run dir: {self.run.run_dir}",
            resume="allow", reinit="create_new", settings=settings,
        )
        _LIVE[run_id] = self.wb

    def log(self, step: int, metrics: dict[str, float], wall_time: float) -> None:
        self.wb.log(metrics, step=step)

    def finish(self, record: dict) -> None:
        self.wb.summary.update({"status": record.get("status"), **final_metrics(record)})
        if record.get("error"):
            self.wb.summary["error"] = str(record["error"])
        self.wb.finish(exit_code=1 if record.get("status") == "failed" else 0)
        _LIVE.pop(self.wb.id, None)


BACKEND = Wandb
