"""mupbench/schedules.py: s(t) equals the closed forms of SPEC-AXES §4 at every step (warmup,
stable, each decay shape, the min ratio), and the trainer applies it: the lr every parameter
group / ensemble member steps with is k·ρ·s(t), and metrics' ``lr`` column is k·s(t)."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from conftest import cfgs, train_single, train_stacked
from mupbench import schedules as S
from mupbench.assemble import build_run
from mupbench.config import ConfigError, compose

T = 200


def sched(**kw):
    name = kw.pop("name")
    return OmegaConf.structured(S.OPTIONS[name](**kw))


def test_constant_is_no_schedule():
    assert S.multiplier(sched(name="constant"), T) is None
    assert S.multiplier(None, T) is None


@pytest.mark.parametrize("warmup, decay, r", [(0.1, None, 0.1), (0.0, None, 0.0), (0.25, 0.5, 0.05)])
def test_cosine_closed_form(warmup, decay, r):
    s = S.multiplier(sched(name="cosine", warmup_frac=warmup, decay_frac=decay, min_lr_ratio=r), T)
    Tw = round(warmup * T)
    Te = T if decay is None else Tw + round(decay * T)
    for t in range(T + 1):
        if t < Tw:
            want = t / Tw
        elif t <= Te:
            want = r + 0.5 * (1 + math.cos(math.pi * (t - Tw) / (Te - Tw))) * (1 - r)
        else:
            want = r
        assert s(t) == pytest.approx(want, abs=1e-15), t
    assert s(Tw) == 1.0 and s(Te) == pytest.approx(r, abs=1e-15)


@pytest.mark.parametrize("shape, f", [("linear", lambda p: 1 - p), ("cosine", lambda p: 0.5 * (1 + math.cos(math.pi * p))),
                                      ("1-sqrt", lambda p: 1 - math.sqrt(p))])
@pytest.mark.parametrize("warmup, decay, r", [(0.1, 0.2, 0.0), (0.0, 0.5, 0.1), (0.05, 1.0 - 0.05, 0.2)])
def test_wsd_closed_form(shape, f, warmup, decay, r):
    s = S.multiplier(sched(name="wsd", warmup_frac=warmup, decay_frac=decay, decay_shape=shape, min_lr_ratio=r), T)
    Tw, Td = round(warmup * T), round(decay * T)
    Ts = T - Tw - Td
    phases = {"warmup": 0, "stable": 0, "decay": 0}
    for t in range(T + 1):
        if t < Tw:
            want, phase = r + (1 - r) * t / Tw, "warmup"
        elif t < Tw + Ts:
            want, phase = 1.0, "stable"
        elif t < T:
            want, phase = r + (1 - r) * f((t - Tw - Ts) / Td), "decay"
        else:
            want, phase = r, "end"
        phases[phase] = phases.get(phase, 0) + 1
        assert s(t) == pytest.approx(want, abs=1e-15), (t, phase)
    assert phases["decay"] == Td and phases["warmup"] == Tw
    assert s(T) == r and s(0) == (r if Tw else 1.0)


def test_phases_must_fit_the_run():
    with pytest.raises(ConfigError, match="schedule.decay_frac"):
        compose(["train.device=cpu", "schedule=wsd", "schedule.warmup_frac=0.9"])
    with pytest.raises(ConfigError, match="schedule.decay_shape"):
        compose(["train.device=cpu", "schedule=wsd", "schedule.decay_shape=exp"])
    with pytest.raises(ConfigError, match="schedule.min_lr_ratio"):
        compose(["train.device=cpu", "schedule=cosine", "schedule.min_lr_ratio=2"])
    with pytest.raises(Exception, match="decay_shape"):  # a key the cosine does not have: refused when composed
        compose(["train.device=cpu", "schedule=cosine", "schedule.decay_shape=linear"])


TINY = ["train.device=cpu", "train.steps=20", "train.eval_every=5", "train.eval_batches=1", "model.width_mult=2",
        "schedule=wsd", "schedule.warmup_frac=0.2", "schedule.decay_frac=0.3", "schedule.decay_shape=cosine", "schedule.min_lr_ratio=0.1"]


def _recorder(opt, rows: list):
    """Record the lrs an optimizer steps with (its groups' at each call)."""
    real = opt.step

    def step(*a, **kw):
        rows.append([g["lr"] for g in opt.param_groups] if hasattr(opt, "param_groups") else opt.lrs.clone())
        return real(*a, **kw)

    opt.step = step


def test_single_run_steps_with_k_rho_s():
    cfg = compose([*TINY, "optimizer.lr=0.01"])
    run = build_run(cfg)
    rows: list = []
    _recorder(run.optimizer, rows)
    out = train_single(run)
    s = S.multiplier(cfg.schedule, cfg.train.steps)
    assert len(rows) == cfg.train.steps
    mults = [g["lr_mult"] for g in run.optimizer.param_groups]
    assert sorted(set(mults)) == [0.5, 1.0]  # μP at ζ = 2: two groups
    for t, lrs in enumerate(rows):
        assert lrs == [0.01 * m * s(t) for m in mults], t
    assert [h["lr"] for h in out.history] == [0.01 * s(h["step"]) for h in out.history]


def test_ensemble_steps_with_k_rho_s():
    configs = cfgs(TINY, [(0, 0.01), (1, 0.03)])
    runs = [build_run(c) for c in configs]
    from mupbench.training.stacked import StackedStepper

    rows: list = []
    real = StackedStepper.set_lr_scale

    def spy(self, s):
        real(self, s)
        rows.append(self.lrs_in_use())

    StackedStepper.set_lr_scale = spy
    try:
        outs, ens = train_stacked(runs)
    finally:
        StackedStepper.set_lr_scale = real
    s = S.multiplier(configs[0].schedule, 20)
    rho = [e.lr_mult for e in runs[0].plan]
    for t, lrs in enumerate(rows):
        assert lrs.tolist() == [[k * m * s(t) for m in rho] for k in (0.01, 0.03)], t
    for k, out in zip((0.01, 0.03), outs):
        assert [h["lr"] for h in out.history] == [k * s(h["step"]) for h in out.history]
