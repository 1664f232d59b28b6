"""TensorBoard: one event dir per run under ``<sweep dir>/tensorboard`` (``logger.tensorboard.dir``),
each evaluation as scalars at its step, the config and the outcome in the HParams plugin's
session summaries. Written with the ``tensorboard`` package's own event writer (no TensorFlow,
no torch)."""

from __future__ import annotations

import time
from pathlib import Path

from mupbench.trackers.core import Backend
from mupbench.trackers.identity import RunInfo, final_metrics, hyperparameters

FINAL_PREFIX = "final/"  # the outcome's scalars, which the HParams table shows as metrics


def logdir(run: RunInfo, opts: dict) -> Path:
    return Path(opts.get("dir") or run.sweep_dir / "tensorboard").expanduser().resolve()


class TensorBoard(Backend):
    name = "tensorboard"

    @staticmethod
    def destination(run: RunInfo, opts: dict) -> str:
        return f"tensorboard:{logdir(run, opts)}"

    def start(self) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.dir = logdir(self.run, self.opts) / self.run.name
        if self.state.get("fresh") and self.dir.is_dir():  # events of an earlier config of this run dir
            for old in self.dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(self.dir), flush_secs=30)
        if not self.state.get("started"):
            self._summary(0, _session_start(self.run), time.time())
        self.writer.flush()

    def log(self, step: int, metrics: dict[str, float], wall_time: float) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._summary(step, Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]), wall_time)

    def finish(self, record: dict) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        step = int(record.get("steps_done") or 0)
        values = [Summary.Value(tag=FINAL_PREFIX + k, simple_value=v) for k, v in final_metrics(record).items()]
        self._summary(step, Summary(value=values), time.time())
        self._summary(step, _session_end(record), time.time())
        self.writer.close()

    def ledger_fields(self) -> dict:
        return {"started": True}

    def _summary(self, step: int, summary, wall_time: float) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self.writer.add_event(Event(wall_time=wall_time, step=step, summary=summary))
        self.writer.flush()  # raises here, where it is caught, if the event file cannot be written


def _plugin_summary(tag: str, data):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data),
                                        tensor=metadata.NULL_TENSOR)])


def _session_start(run: RunInfo):
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=run.group, start_time_secs=run.started_epoch() or time.time())
    for key, value in hyperparameters(run.config).items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value = value
        else:
            start.hparams[key].string_value = value
    return _plugin_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        version=metadata.PLUGIN_DATA_VERSION, session_start_info=start))


def _session_end(record: dict):
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    status = api_pb2.STATUS_FAILURE if record.get("status") == "failed" else api_pb2.STATUS_SUCCESS
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    return _plugin_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        version=metadata.PLUGIN_DATA_VERSION, session_end_info=end))


BACKEND = TensorBoard
