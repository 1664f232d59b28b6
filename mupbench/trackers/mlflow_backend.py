"""MLflow: an experiment per sweep (``logger.mlflow.experiment``, default the sweep dir's name)
holding a parent run for the sweep and one nested run per point: the config as params, each
evaluation as metrics at its step, the outcome as final metrics and tags. The tracking store is
a file store in ``<sweep dir>/mlruns`` unless ``logger.mlflow.tracking_uri`` names another."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mupbench.trackers.core import Backend
from mupbench.trackers.identity import RunInfo, final_metrics, hyperparameters

SWEEP_TAG = "mupbench.sweep_dir"
RUN_TAG = "mupbench.run_dir"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 500  # the smallest limit of the MLflow versions in the extra
STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "failed": "FAILED"}


def tracking_uri(run: RunInfo, opts: dict) -> str:
    uri = opts.get("tracking_uri")
    return uri if uri else (run.sweep_dir / "mlruns").as_uri()


def experiment_name(run: RunInfo, opts: dict) -> str:
    return opts.get("experiment") or run.sweep_dir.name


class MLflow(Backend):
    name = "mlflow"

    @staticmethod
    def destination(run: RunInfo, opts: dict) -> str:
        return f"mlflow:{tracking_uri(run, opts)}#{experiment_name(run, opts)}"

    def start(self) -> None:
        uri = tracking_uri(self.run, self.opts)
        if uri.startswith("file:"):
            # MLflow 3.x refuses its file store unless asked; it is the one store that many
            # processes of a sweep can write at once without a server
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        run_id = self.state.get("run_id")
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
        else:
            experiment = self._experiment()
            parent = self._parent(experiment)
            r = self.run.record
            tags = {PARENT_TAG: parent, RUN_TAG: str(self.run.run_dir), SWEEP_TAG: str(self.run.sweep_dir), "mupbench.kind": "run",
                    "mupbench.group": self.run.group, "mupbench.family": self.run.family,
                    "mupbench.fingerprint": self.run.fingerprint, "mupbench.status": "running",
                    **{f"mupbench.{k}": str(r.get(k)) for k in ("setup", "parametrization", "optimizer", "width_mult", "lr", "seed")}}
            run_id = self.client.create_run(experiment, run_name=self.run.title, tags=tags).info.run_id
            self.state["run_id"] = run_id
            params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in hyperparameters(self.run.config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            self.client.log_batch(run_id, tags=[RunTag("mlflow.note.content", f"run dir: {self.run.run_dir}")])

    def log(self, step: int, metrics: dict[str, float], wall_time: float) -> None:
        from mlflow.entities import Metric

        ms = int(wall_time * 1000)
        self.client.log_batch(self.state["run_id"], metrics=[Metric(k, v, ms, step) for k, v in metrics.items()])

    def finish(self, record: dict) -> None:
        from mlflow.entities import Metric, RunTag

        run_id, step = self.state["run_id"], int(record.get("steps_done") or 0)
        metrics = [Metric(k, v, _now_ms(), step) for k, v in final_metrics(record).items()]
        tags = [RunTag("mupbench.status", str(record.get("status")))]
        if record.get("error"):
            tags.append(RunTag("mupbench.error", str(record["error"])[:5000]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, STATUS.get(str(record.get("status")), "FINISHED"))

    def ledger_fields(self) -> dict:
        return {"run_id": self.state.get("run_id")}

    # -- the sweep's experiment and parent run, created once even when many processes start together
    def _experiment(self) -> str:
        name = experiment_name(self.run, self.opts)
        with _sweep_lock(self.run.sweep_dir):
            found = self.client.get_experiment_by_name(name)
            return found.experiment_id if found else self.client.create_experiment(name)

    def _parent(self, experiment: str) -> str:
        sweep = str(self.run.sweep_dir)
        with _sweep_lock(self.run.sweep_dir):
            found = self.client.search_runs([experiment], filter_string=f"tags.`{SWEEP_TAG}` = '{_quote(sweep)}' "
                                            f"and tags.`mupbench.kind` = 'sweep'", max_results=1)
            if found:
                return found[0].info.run_id
            parent = self.client.create_run(experiment, run_name=self.run.sweep_dir.name,
                                            tags={SWEEP_TAG: sweep, "mupbench.kind": "sweep"})
            self.client.set_terminated(parent.info.run_id, "FINISHED")  # a container: its children are the runs
            return parent.info.run_id


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class _sweep_lock:
    """An exclusive lock on a file in the sweep dir (across processes), held for a few calls."""

    def __init__(self, sweep_dir: Path):
        self.path = Path(sweep_dir) / ".trackers.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


BACKEND = MLflow
