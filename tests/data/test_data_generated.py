"""The generated stand-ins: deterministic in split_seed, the right shapes, and something to learn."""

import math

import pytest
import torch

from mupbench.data import DataSpec
from mupbench.data import synthetic_images as si
from mupbench.data import synthetic_tokens as st

CPU = torch.device("cpu")


def _same(a, b):
    return all(torch.equal(u, v) for u, v in zip(a.train + a.val + a.test, b.train + b.val + b.test))


def test_images_shapes_and_determinism():
    s = si.load(si.Config(), CPU)
    assert s.spec == DataSpec("classification", (3, 32, 32), 10)
    assert [t.shape for t in s.train + s.val + s.test] == [(2048, 3, 32, 32), (2048,), (512, 3, 32, 32), (512,), (512, 3, 32, 32), (512,)]
    assert s.train[0].dtype == torch.float32 and s.train[1].dtype == torch.int64
    assert set(s.train[1].tolist()) == set(range(10))
    assert s.train[0].mean().item() == pytest.approx(127.5, abs=10) and s.train[0].std().item() == pytest.approx(64, rel=0.2)
    assert _same(s, si.load(si.Config(), CPU)) and not _same(s, si.load(si.Config(split_seed=1), CPU))


@pytest.mark.parametrize("noise, low, high", [(4.0, 0.6, 0.95), (0.5, 0.95, 1.0), (30.0, 0.0, 0.3)])
def test_images_are_learnable_and_noise_sets_difficulty(noise, low, high):
    s = si.load(si.Config(noise=noise), CPU)
    (x, y), (vx, vy) = s.train, s.val
    means = torch.stack([x[y == c].mean(0) for c in range(10)]).flatten(1)
    acc = (torch.cdist(vx.flatten(1), means).argmin(1) == vy).float().mean().item()  # nearest class mean
    assert low < acc <= high


def test_tokens_shapes_and_determinism():
    s = st.load(st.Config(), CPU)
    assert s.spec == DataSpec("lm", (32,), 64)
    assert [t.shape for t in s.train + s.val + s.test] == [(50_000,), (5_000,), (5_000,)]
    ids = torch.cat(s.train + s.val + s.test)
    assert ids.dtype == torch.int64 and ids.min() >= 0 and ids.max() < 64
    assert _same(s, st.load(st.Config(), CPU)) and not _same(s, st.load(st.Config(split_seed=1), CPU))
    other = st.load(st.Config(vocab=256, context=8, n_train=1000, n_val=100, n_test=100), CPU)
    assert other.spec == DataSpec("lm", (8,), 256) and len(other.train[0]) == 1000


def test_tokens_follow_the_chain_whose_entropy_rate_is_reported():
    cfg = st.Config()
    s = st.load(cfg, CPU)
    p = st.transitions(cfg.vocab, cfg.sharpness, torch.Generator().manual_seed(cfg.split_seed))
    h = s.info["entropy_rate"]
    assert 1.0 < h < 0.5 * math.log(cfg.vocab)  # well below a uniform guess, so there is something to learn
    ids = s.train[0]
    # the chain's own next-token loss on the sample equals its entropy rate (up to sampling error)
    assert -p[ids[:-1], ids[1:]].log().mean().item() == pytest.approx(h, abs=0.03)
    # the empirical state frequencies match the stationary distribution
    assert (torch.bincount(ids, minlength=64) / len(ids) - st.stationary(p)).abs().max().item() < 0.01
    assert st.entropy_rate(st.transitions(64, 0.0, torch.Generator())) == pytest.approx(math.log(64))

