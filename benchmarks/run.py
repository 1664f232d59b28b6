"""mupbench's speed benchmark: one command, a table on stdout and a JSON file.

    python -m benchmarks.run            # the full benchmark (about 25 minutes on 2 CPU cores)
    python -m benchmarks.run --quick    # a smaller version (a few minutes), extrapolated and labelled so

Parts (``--parts``, default all):
  steps  steps/s and peak memory per setup (MLP, VGG, ViT, Transformer) at the base width and a
         larger one: mupbench's single-run loop under SP and under μP, beside the plain-PyTorch
         reference loop (benchmarks/reference.py) measured in the same process; ratios against it.
         Each setup runs in its own process; the three loops alternate, and the table gives the
         median of ``--reps`` repetitions (the machine is shared and noisy).
  grid   runs/hour over a slice of the MLP grid (ζ ∈ {1, 4, 16}, 8 k values, 16 seeds, 2,000
         steps): (a) one process per run through the entrypoint, (b) runs back to back in one
         process (the default launcher's multirun), (c) batched (hydra/launcher=batched); beside
         them the reference loop, one process per run (the paper's shell loops) and back to back.
         Every run trains 2,000 steps. (a), (b) and the reference are timed on a few runs and
         scaled to the slice's 384; (c) trains the whole slice as one sweep command (with --quick:
         at 100 and 300 steps, extrapolated linearly to 2,000). Every number says which. Every
         approach runs with ``--grid-threads`` threads (default: torch's default, as a user's
         command runs).
  gpu    only with CUDA: steps/s at the base and the largest paper width, batched vs single for
         the MLP slice, and the Transformer at ζ = 32 with bf16: achieved TFLOP/s vs the GPU's peak.

Results land in benchmarks/results/ (git-ignored). The steps part's CPU timings use ``--threads``
threads (default 1: the 2 cores are shared and one thread is less noisy); every loop measured
gets the same. ``--device cuda`` runs the steps and grid parts on the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CALIFORNIA = Path(os.environ.get("MUPBENCH_SHARED_DATA", REPO.parent / "shared" / "data")) / "california_housing"

# (name, overrides, base ζ, larger ζ, batch) — SPEC §4 batch sizes; datasets embedded except California
SETUPS = {
    "mlp": (["model=mlp"], 1, 16, 16),
    "vgg": (["model=vgg", "dataset=synthetic_images"], 1, 4, 32),
    "vit": (["model=vit", "dataset=synthetic_images"], 1, 4, 32),
    "transformer": (["model=transformer", "dataset=synthetic_tokens"], 1, 4, 32),
}
GRID_ZETAS = (1, 4, 16)
GRID_KS = (1e-5, 4.64e-5, 2.15e-4, 1e-3, 4.64e-3, 2.15e-2, 0.1, 0.464)  # every other k of the paper's MLP grid
GRID_SEEDS, GRID_STEPS = 16, 2000
LOAD_WARMUP_S = 5  # the competing load runs this long before the first timed command
# GPU table: the largest paper widths (SPEC §5)
PAPER_MAX = {"mlp": 512, "vgg": 128, "vit": 128, "transformer": 32}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.0}


def mlp_data() -> list[str]:
    """California Housing where the shared copy exists (SPEC's MLP data), else the synthetic stand-in."""
    if (CALIFORNIA / "cal_housing.data").exists():
        return ["dataset=california_housing", f"dataset.root={CALIFORNIA}"]
    return ["dataset=synthetic"]


def setup_overrides(name: str, zeta: float, extra: list[str] = (), device: str = "cpu") -> list[str]:
    over, _, _, batch = SETUPS[name]
    data = mlp_data() if name == "mlp" else []
    return [*over, *data, f"model.width_mult={zeta}", f"train.batch_size={batch}", f"train.device={device}", *extra]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------- part: steps
AXES = ["schedule=cosine", "schedule.warmup_frac=0.05", "optimizer.weight_decay=0.1"]  # --axes: on in both loops


def measure_steps(name: str, zeta: float, reps: int, target_s: float, threads: int, device: str = "cpu", axes: bool = False) -> dict:
    """In this process: the reference loop, mupbench's loop under SP and under μP, alternating.
    ``axes``: both with a cosine schedule and weight decay (the reference: AdamW + LambdaLR)."""
    import torch

    from benchmarks.reference import Reference
    from mupbench.assemble import build_run
    from mupbench.config import compose
    from mupbench.data import load_splits
    from mupbench.training.loop import Member, train
    from mupbench.training.single import SingleStepper

    torch.set_num_threads(threads)
    rss0 = peak_rss_mb()
    base = setup_overrides(name, zeta, AXES if axes else [], device=device)
    cfg = compose(base)
    dev = torch.device(device)
    splits = load_splits(cfg.dataset, dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> tuple[float, float]:
        """(wall, CPU) seconds: the CPU time of this process is less disturbed by the other
        processes on a shared machine; both are reported."""
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        return time.perf_counter() - t0, time.process_time() - c0

    def ours(param: str, steps: int, eval_every: int):
        c = compose([*base, f"parametrization={param}", f"train.steps={steps}", f"train.eval_every={eval_every}"])
        run = build_run(c, dev, splits)
        return lambda: train(SingleStepper(run), [Member(None)], c.train)  # the lifecycle's single-run loop

    def ref(steps: int, eval_every: int):
        c = compose([*base, f"train.steps={steps}", f"train.eval_every={eval_every}"])
        r = Reference.from_config(c, splits, dev)
        return lambda: r.train(steps)

    # calibrate: about target_s per repetition, evaluations every 200 steps as SPEC §4 (or at the
    # ends of a shorter repetition, for the large setups)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    timed(ours("mup", 10, 10))  # warm-up: kernels, allocator and library handles
    probe = timed(ours("mup", 20, 20))[0] / 20
    mem_ours = (torch.cuda.max_memory_allocated(dev) / 2**20) if dev.type == "cuda" else peak_rss_mb() - rss0
    steps = int(min(2000, max(10, target_s / max(probe, 1e-6))))
    steps = steps // 200 * 200 if steps >= 400 else steps
    eval_every = min(200, steps)
    timed(ref(10, 10))  # warm both paths
    times: dict[str, list[float]] = {"reference": [], "sp": [], "mup": []}
    cpu: dict[str, list[float]] = {"reference": [], "sp": [], "mup": []}
    order = ["reference", "sp", "mup"]
    for r in range(reps):
        for variant in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
            fn = ref(steps, eval_every) if variant == "reference" else ours(variant, steps, eval_every)
            wall, c = timed(fn)
            times[variant].append(wall / steps)
            cpu[variant].append(c / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    def paired(t: dict, a: str, b: str) -> float:
        """The median over repetitions of a/b within each repetition (measured side by side, so
        slow drifts of the machine's load cancel)."""
        return statistics.median(x / y for x, y in zip(t[a], t[b]))

    n_params = sum(p.numel() for p in build_run(compose([*base, "train.steps=1"]), dev, splits).model.parameters())
    return {
        "setup": name, "dataset": cfg.dataset.name, "width_mult": zeta, "batch_size": cfg.train.batch_size, "num_params": n_params,
        "steps_per_rep": steps, "eval_every": eval_every, "reps": reps, "threads": threads, "device": device, "axes": AXES if axes else [],
        "step_ms": {k: 1e3 * v for k, v in med.items()}, "step_ms_all": {k: [1e3 * x for x in v] for k, v in times.items()},
        "steps_per_s": {k: 1 / v for k, v in med.items()},
        "ratio_vs_reference": {"sp": paired(times, "sp", "reference"), "mup": paired(times, "mup", "reference")},
        "ratio_mup_vs_sp": paired(times, "mup", "sp"),
        "cpu_step_ms": {k: 1e3 * v for k, v in med_cpu.items()}, "cpu_step_ms_all": {k: [1e3 * x for x in v] for k, v in cpu.items()},
        "cpu_ratio_vs_reference": {"sp": paired(cpu, "sp", "reference"), "mup": paired(cpu, "mup", "reference")},
        "cpu_ratio_mup_vs_sp": paired(cpu, "mup", "sp"),
        "peak_mem_mb": mem_ours, "peak_mem_kind": "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "RSS growth of the process while building and stepping mupbench's run",
    }


def part_steps(args) -> list[dict]:
    rows = []
    for name, (_, z0, z1, _) in SETUPS.items():
        if args.setups and name not in args.setups.split(","):
            continue
        for zeta in (z0, z1):
            print(f"  steps: {name} ζ={zeta} ...", flush=True)
            rows.append(child(["steps", name, str(zeta), str(args.reps), str(args.target_s), str(args.threads), args.device, str(args.axes)]))
    return rows


# ---------------------------------------------------------------------------------- part: grid
def timed_cmd(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark command failed ({' '.join(cmd[:6])} ...): {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    seconds = time.perf_counter() - t0
    print(f"    {seconds:7.1f} s  {' '.join(c for c in cmd[1:] if not c.startswith(('dataset.', 'hydra.', '--california')))[:150]}", flush=True)
    return seconds


def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


def part_grid(args) -> dict:
    """(a), (b) and the reference: a few full runs timed, scaled to 128 runs per ζ; (c): each ζ's
    128 runs as one batched sweep command (with --quick, at 100 and 300 steps, extrapolated)."""
    quick = args.quick
    per_zeta = len(GRID_KS) * GRID_SEEDS
    full_runs = len(GRID_ZETAS) * per_zeta
    threads = args.grid_threads
    flush = ["train.flush_denormal=true"] if args.flush_denormal else []
    common = [*mlp_data(), f"train.device={args.device}", f"train.threads={threads}", f"train.steps={GRID_STEPS}", *flush]
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="mupbench-bench-"))
    n_each = 1 if quick else 2  # single runs timed per ζ, for (a) and the reference
    b_ks = GRID_KS[3:4] if quick else GRID_KS[1::2]  # (b): these k values, seed 0, every ζ
    result: dict = {"slice": {"zetas": list(GRID_ZETAS), "ks": list(GRID_KS), "seeds": GRID_SEEDS, "steps": GRID_STEPS, "runs": full_runs},
                    "threads": threads or f"torch default ({_default_threads()})", "device": args.device,
                    "flush_denormal": args.flush_denormal, "rows": {}}
    ref_data = ["--california", str(CALIFORNIA)] if "dataset=california_housing" in common else []
    ref_data += ["--flush-denormal"] if args.flush_denormal else []
    try:
        a, ra, c = {}, {}, {}
        for zeta in GRID_ZETAS:
            print(f"  grid: ζ={zeta} ...", flush=True)
            ta, tr = [], []
            for i in range(n_each):  # interleaved: entrypoint, reference, entrypoint, reference
                k = GRID_KS[3 + i]
                ta.append(timed_cmd([py, "-m", "mupbench.train", *common, f"model.width_mult={zeta}", f"optimizer.lr={k}", f"seed={i}",
                                     f"hydra.run.dir={work}/a/{zeta}_{i}"], REPO))
                tr.append(timed_cmd([py, str(REPO / "benchmarks" / "reference.py"), "--width-mult", str(zeta), "--lr", str(k), "--seed", str(i),
                                     "--steps", str(GRID_STEPS), "--threads", str(threads), "--device", args.device, *ref_data], REPO))
            a[zeta], ra[zeta] = statistics.mean(ta), statistics.mean(tr)

        # (c) the whole slice as one batched sweep command: every width's 8 k values × 16 seeds
        # as ensembles; with --quick at 100 and 300 steps, extrapolated linearly to 2,000
        def batched(steps: int, tag: str) -> float:
            return timed_cmd([py, "-m", "mupbench.train", "-m", "hydra/launcher=batched", *common, f"train.steps={steps}",
                              f"model.width_mult={','.join(map(str, GRID_ZETAS))}", f"optimizer.lr={','.join(map(str, GRID_KS))}",
                              f"seed=range({GRID_SEEDS})", f"hydra.sweep.dir={work}/c{tag}"], REPO)

        print("  grid: (c) batched, the whole slice ...", flush=True)
        if quick:
            t100, t300 = batched(100, "a"), batched(300, "b")
            t_c, how = t100 + (t300 - t100) * (GRID_STEPS - 100) / 200, f"{t100:.1f} s at 100 steps, {t300:.1f} s at 300, extrapolated"
        else:
            t_c, how = batched(GRID_STEPS, ""), "measured"
        records = [json.loads(q.read_text()) for q in work.glob(f"c{'b' if quick else ''}/*/result.json")]
        for zeta in GRID_ZETAS:  # each width's share: its ensembles' wall time, from the records
            mine = [r for r in records if r["config"]["model"]["width_mult"] == zeta]
            ens = {r["batched"]["ensemble"]: r["batched"] for r in mine if r.get("batched")}
            statuses = [r["status"] for r in mine]
            c[zeta] = {"ensembles": len(ens), "members": sorted(e["members"] for e in ens.values()), "train_s": sum(e["ensemble_s"] for e in ens.values()),
                       "runs": len(mine), "statuses": {x: statuses.count(x) for x in sorted(set(statuses))}}
        overhead = t_c - sum(v["train_s"] for v in c.values()) if not quick else None
        startup = timed_cmd([py, "-m", "mupbench.train", *common, "train.steps=1", "train.eval_every=1", f"hydra.run.dir={work}/startup"], REPO)
        # (b) back to back in one process: the default launcher's multirun
        t_b = timed_cmd([py, "-m", "mupbench.train", "-m", *common, f"model.width_mult={','.join(map(str, GRID_ZETAS))}",
                         f"optimizer.lr={','.join(map(str, b_ks))}", "seed=0", f"hydra.sweep.dir={work}/b"], REPO)
        b_runs = len(GRID_ZETAS) * len(b_ks)
        t_rb = child_time(["grid_ref", ",".join(map(str, GRID_ZETAS)), ",".join(map(str, b_ks)), str(GRID_STEPS), str(threads), args.device,
                           str(args.flush_denormal)])

        rows = result["rows"]
        hours = lambda secs: secs / 3600  # noqa: E731
        rows["ref_process_per_run"] = {"hours": hours(sum(t * per_zeta for t in ra.values())), "how": "extrapolated",
                                       "by_zeta_s_per_run": ra, "detail": f"plain-PyTorch script, {n_each} run(s) per ζ timed, × {per_zeta} runs per ζ"}
        rows["a_process_per_run"] = {"hours": hours(sum(t * per_zeta for t in a.values())), "how": "extrapolated", "by_zeta_s_per_run": a,
                                     "detail": f"`python -m mupbench.train` per run, {n_each} run(s) per ζ timed, × {per_zeta} runs per ζ (start-up alone {startup:.1f} s)"}
        rows["ref_back_to_back"] = {"hours": hours(t_rb * full_runs / b_runs), "how": "extrapolated",
                                    "detail": f"plain-PyTorch loop, {b_runs} runs in one process in {t_rb:.1f} s (data loaded once), × {full_runs}/{b_runs}"}
        rows["b_back_to_back"] = {"hours": hours(startup + (t_b - startup) * full_runs / b_runs), "how": "extrapolated",
                                  "detail": f"`-m` with the default launcher, {b_runs} runs in {t_b:.1f} s; start-up once, the rest × {full_runs}/{b_runs}"}
        rows["c_batched"] = {"hours": hours(t_c), "how": "extrapolated" if quick else "measured", "by_zeta": c, "seconds": t_c,
                             "detail": f"one `-m hydra/launcher=batched` command over the slice, {how}: {t_c:.1f} s; "
                                       + "; ".join(f"ζ={z}: {v['runs']} runs in {v['ensembles']} ensemble(s) {v['members']} training {v['train_s']:.1f} s"
                                                   for z, v in c.items())
                                       + (f"; start-up, composing, building and records {overhead:.1f} s" if overhead is not None else "")}
        for row in rows.values():
            row["runs_per_hour"] = full_runs / row["hours"]
        base_a, base_ref = rows["a_process_per_run"]["runs_per_hour"], rows["ref_process_per_run"]["runs_per_hour"]
        for row in rows.values():
            row["x_vs_a"] = row["runs_per_hour"] / base_a
            row["x_vs_ref_process_per_run"] = row["runs_per_hour"] / base_ref
        if not quick:  # per width: its ensembles' training, plus an equal share (per run) of the command's overhead
            share = overhead / full_runs
            result["by_zeta"] = {z: {"a_s_per_run": a[z], "c_s_per_run": c[z]["train_s"] / per_zeta + share,
                                     "c_x_vs_a": a[z] / (c[z]["train_s"] / per_zeta + share)} for z in GRID_ZETAS}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _cpu_load(n: int) -> list[subprocess.Popen]:
    """``n`` CPU-bound processes competing for the cores (what a shared machine or a node with
    other jobs looks like to a sweep); stopped by the caller."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def part_threads(args) -> dict:
    """The MLP slice's batched command with and without competing CPU load, for
    ``train.threads=0`` (the automatic choice) and each fixed count up to the usable CPUs. Each
    setting runs once per condition, settings interleaved; the load is two busy processes started
    ``LOAD_WARMUP_S`` before the first timed command."""
    from mupbench.assemble import usable_cpus

    steps = args.threads_steps
    flush = ["train.flush_denormal=true"] if args.flush_denormal else []
    counts = [0, *range(1, usable_cpus() + 1)]
    work = Path(tempfile.mkdtemp(prefix="mupbench-bench-threads-"))
    out: dict = {"steps": steps, "slice": {"zetas": list(GRID_ZETAS), "ks": list(GRID_KS), "seeds": GRID_SEEDS}, "rows": {}}
    try:
        for condition, load in (("quiet", 0), ("contended", 2)):
            procs = _cpu_load(load)
            try:
                if procs:
                    time.sleep(LOAD_WARMUP_S)
                row = {}
                for n in counts:
                    d = work / f"{condition}-{n}"
                    secs = timed_cmd([sys.executable, "-m", "mupbench.train", "-m", "hydra/launcher=batched", *mlp_data(), "train.device=cpu",
                                      f"train.threads={n}", f"train.steps={steps}", *flush,
                                      f"model.width_mult={','.join(map(str, GRID_ZETAS))}", f"optimizer.lr={','.join(map(str, GRID_KS))}",
                                      f"seed=range({GRID_SEEDS})", f"hydra.sweep.dir={d}"], REPO)
                    chosen = sorted({json.loads(r.read_text()).get("threads") for r in d.glob("*/result.json")} - {None})
                    row[str(n)] = {"seconds": secs, "threads_used": chosen}
                    print(f"  threads: {condition}, train.threads={n}: {secs:.1f} s (threads used {chosen})", flush=True)
            finally:
                for q in procs:
                    q.kill()
                    q.wait()
            best = min(v["seconds"] for k, v in row.items() if k != "0")
            row["auto_vs_best_fixed"] = row["0"]["seconds"] / best
            out["rows"][condition] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def grid_ref(zetas: str, ks: str, steps: int, threads: int, device: str = "cpu", flush_denormal: bool = False) -> float:
    """The reference loop, run after run in this process, over the (ζ, k) subset; seconds."""
    import torch

    from benchmarks.reference import Reference
    from mupbench.config import compose
    from mupbench.data import load_splits

    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    t0 = time.perf_counter()
    splits = None
    for zeta in zetas.split(","):
        for k in ks.split(","):
            cfg = compose([*setup_overrides("mlp", float(zeta), device=device), f"optimizer.lr={k}"])
            splits = splits or load_splits(cfg.dataset, torch.device(device))
            Reference.from_config(cfg, splits, torch.device(device)).train(steps)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------- part: gpu
def part_gpu(args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device: the GPU table needs one (this machine has none)"}
    return child(["gpu", str(args.quick)])


def lm_data() -> tuple[list[str], str]:
    """Tiny Shakespeare (the paper's LM data) where the shared copy exists, else synthetic tokens
    with the paper's context of 128 (a 64-token vocabulary: a smaller readout than GPT-2's)."""
    shakespeare = CALIFORNIA.parent / "tinyshakespeare"
    if shakespeare.is_dir():
        return ["dataset=tiny_shakespeare", f"dataset.root={shakespeare}"], "tiny_shakespeare"
    return ["dataset=synthetic_tokens", "dataset.context=128"], "synthetic_tokens (vocabulary 64, context 128)"


def measure_gpu(quick: bool, device: str = "cuda", widths: dict | None = None, lm_zeta: float = 32, grid: tuple | None = None) -> dict:
    """Steps/s at the base and the largest paper width (single runs, SPEC's batch sizes), the
    Transformer at ζ = 32 with bf16 and TF32 (model FLOPs per step 6·N·B·T over the non-embedding
    parameters plus attention's 12·L·B·T²·d) against the GPU's dense bf16 peak, and batched vs
    single steps/s for the MLP slice's widths. ``device``, ``widths``, ``lm_zeta`` and ``grid``
    exist so that the code path can be tried small on a CPU (tests/test_bench.py)."""
    import torch

    from mupbench.assemble import autocast, build_run
    from mupbench.training.stacked import StackedStepper
    from mupbench.config import compose
    from mupbench.data import load_splits

    dev = torch.device(device)
    widths = widths or PAPER_MAX
    zetas, ks, seeds = grid or (GRID_ZETAS, GRID_KS, GRID_SEEDS)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    out: dict = {"device": name, "rows": []}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def on_device(over: list[str]) -> list[str]:
        return [o.replace("train.device=cpu", f"train.device={device}") for o in over]

    def rate(over: list[str], steps: int) -> dict:
        cfg = compose(on_device(over))
        run = build_run(cfg, dev)
        x, y = run.train_sampler.next()

        def step():
            with autocast(cfg, dev):
                loss = run.loss_fn(run.model(x), y)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()

        for _ in range(3):
            step()
        sync()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        emb = sum(m.weight.numel() for m in run.model.modules() if isinstance(m, torch.nn.Embedding))
        return {"steps_per_s": steps / (time.perf_counter() - t0), "cfg": cfg,
                "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
                "num_params": sum(p.numel() for p in run.model.parameters()), "embedding_params": emb}

    steps = 10 if quick else 50
    lm_over, lm_name = lm_data()
    for setup, (_, z0, _, _) in SETUPS.items():
        for zeta in (z0, widths[setup]):
            r = rate(setup_overrides(setup, zeta, lm_over if setup == "transformer" else []), steps)
            out["rows"].append({"setup": setup, "width_mult": zeta, "steps_per_s": r["steps_per_s"], "peak_mem_gb": r["peak_mem_gb"], "num_params": r["num_params"]})
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    for key, extra in (("transformer_bf16", []), ("transformer_bf16_compiled", ["train.compile=true"])):
        if extra and dev.type != "cuda":
            continue  # Inductor on CPU takes minutes: the compiled row is for GPUs
        r = rate(setup_overrides("transformer", lm_zeta, [*lm_over, "train.bf16=true", "train.tf32=true", *extra]), steps)
        cfg = r["cfg"]
        T, B, L, d = cfg.dataset.context, cfg.train.batch_size, cfg.model.blocks, int(cfg.model.base_width * cfg.model.width_mult)
        flops = 6 * (r["num_params"] - r["embedding_params"]) * B * T + 12 * L * B * T * T * d
        achieved = flops * r["steps_per_s"] / 1e12
        out[key] = {"width_mult": lm_zeta, "data": lm_name, "tflops": achieved, "peak_tflops": peak, "compiled": bool(extra),
                    "fraction_of_peak": achieved / peak if peak else None, "steps_per_s": r["steps_per_s"], "peak_mem_gb": r["peak_mem_gb"]}
    for zeta in zetas:  # batched vs single, per member
        over = on_device(setup_overrides("mlp", zeta))
        single = rate(over, steps * 4)["steps_per_s"]
        cfgs = [compose([*over, f"seed={s}", f"optimizer.lr={k}"]) for k in ks for s in range(seeds)]
        splits = load_splits(cfgs[0].dataset, dev)
        ens = StackedStepper([build_run(c, dev, splits) for c in cfgs])
        for _ in range(3):
            ens.step(ens.next_batch())
        sync()
        t0 = time.perf_counter()
        for _ in range(steps * 4):
            ens.step(ens.next_batch())
        sync()
        member_rate = steps * 4 * ens.size / (time.perf_counter() - t0)
        out.setdefault("mlp_batched_vs_single", []).append({"width_mult": zeta, "members": ens.size, "single_steps_per_s": single,
                                                            "batched_member_steps_per_s": member_rate, "speedup": member_rate / single})
    return out


# ------------------------------------------------------------------------------- child processes
def child(argv: list[str]) -> dict:
    """Run one measurement in a fresh process (its own peak memory, no state from the others)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--child", *argv], cwd=REPO, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"benchmark child {argv[:3]} failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    return json.loads(lines[-1])


def child_time(argv: list[str]) -> float:
    return child(argv)["seconds"]


def run_child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "steps":
        res = measure_steps(argv[1], float(argv[2]), int(argv[3]), float(argv[4]), int(argv[5]), argv[6], argv[7] == "True")
    elif kind == "grid_ref":
        res = {"seconds": grid_ref(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5], argv[6] == "True")}
    elif kind == "gpu":
        res = measure_gpu(argv[1] == "True")
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(res, default=str))


# ------------------------------------------------------------------------------------- report
def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(res: dict) -> str:
    out = []
    if "steps" in res:
        rows = [["setup", "ζ", "params", "steps/rep", "ref steps/s", "SP steps/s", "μP steps/s", "SP/ref", "μP/ref", "μP/SP",
                 "SP/ref cpu", "μP/ref cpu", "μP/SP cpu", "peak MB"]]
        for r in res["steps"]:
            s, q, c = r["steps_per_s"], r["ratio_vs_reference"], r["cpu_ratio_vs_reference"]
            rows.append([f"{r['setup']}/{r['dataset']}", f"{r['width_mult']:g}", f"{r['num_params']:,}", str(r["steps_per_rep"]), f"{s['reference']:.1f}",
                         f"{s['sp']:.1f}", f"{s['mup']:.1f}", f"{q['sp']:.2f}", f"{q['mup']:.2f}", f"{r['ratio_mup_vs_sp']:.3f}",
                         f"{c['sp']:.2f}", f"{c['mup']:.2f}", f"{r['cpu_ratio_mup_vs_sp']:.3f}", f"{r['peak_mem_mb']:.0f}"])
        t = res["steps"][0]
        axes = f" with {' '.join(t['axes'])}" if t.get("axes") else ""
        out.append(f"Single-run step time{axes}, {t.get('device', 'cpu')}, {t['threads']} thread(s), {t['reps']} alternating repetitions: steps/s are medians, ratios "
                   f"are medians of the per-repetition ratios of time per step (< 1: faster than the plain-PyTorch reference), by wall clock "
                   f"and by this process's CPU time\n" + fmt_table(rows))
    if "grid" in res:
        g = res["grid"]
        sl = g["slice"]
        rows = [["how the slice runs", "runs/hour", "× (a)", "× ref (a)", "measured?"]]
        labels = {"ref_process_per_run": "reference loop, one process per run", "a_process_per_run": "(a) one process per run (entrypoint)",
                  "ref_back_to_back": "reference loop, back to back", "b_back_to_back": "(b) back to back, one process",
                  "c_batched": "(c) batched ensembles"}
        for key, label in labels.items():
            r = g["rows"][key]
            rows.append([label, f"{r['runs_per_hour']:,.0f}", f"{r['x_vs_a']:.1f}", f"{r['x_vs_ref_process_per_run']:.1f}", r["how"]])
        z = [["ζ", "(a) s/run", "(c) s/run", "(c) × (a)"]] + [[str(k), f"{v['a_s_per_run']:.2f}", f"{v['c_s_per_run']:.3f}", f"{v['c_x_vs_a']:.1f}"]
                                                                for k, v in g.get("by_zeta", {}).items()]
        out.append(f"MLP grid slice: ζ ∈ {sl['zetas']}, {len(sl['ks'])} k values, {sl['seeds']} seeds, {sl['steps']} steps = {sl['runs']} runs "
                   f"({g.get('device', 'cpu')}, {g['threads']} thread(s){', denormals flushed' if g.get('flush_denormal') else ''})\n" + fmt_table(rows) + "\n" + "\n".join(f"  {labels[k]}: {r['detail']}" for k, r in g["rows"].items())
                   + ("\nper width ((c): its ensembles' training + an equal share of the command's overhead)\n" + fmt_table(z) if len(z) > 1 else ""))
    if "gpu" in res:
        gpu = res["gpu"]
        if "skipped" in gpu:
            out.append(f"GPU table: skipped — {gpu['skipped']}")
        else:
            rows = [["setup", "ζ", "params", "steps/s", "peak GB"]] + [[r["setup"], f"{r['width_mult']:g}", f"{r['num_params']:,}", f"{r['steps_per_s']:.1f}",
                                                                        f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "-"] for r in gpu["rows"]]
            lm_lines = []
            for key, how in (("transformer_bf16", "eager"), ("transformer_bf16_compiled", "train.compile=true")):
                if key not in gpu:
                    continue
                tb = gpu[key]
                peak = f"{tb['peak_tflops']:.0f}" if tb["peak_tflops"] else "unknown"
                frac = f" ({100 * tb['fraction_of_peak']:.0f}% of peak)" if tb["fraction_of_peak"] else ""
                lm_lines.append(f"Transformer ζ={tb['width_mult']:g} on {tb['data']}, bf16 + TF32, {how}: {tb['steps_per_s']:.1f} steps/s, "
                                f"{tb['tflops']:.1f} model TFLOP/s of {peak}{frac}")
            rows2 = [["MLP ζ", "members", "single steps/s", "batched member-steps/s", "speed-up"]] + [
                [f"{r['width_mult']:g}", str(r["members"]), f"{r['single_steps_per_s']:.0f}", f"{r['batched_member_steps_per_s']:.0f}", f"{r['speedup']:.1f}"]
                for r in gpu["mlp_batched_vs_single"]]
            out.append(f"GPU: {gpu['device']}\n" + fmt_table(rows) + "\n" + "\n".join(lm_lines) + "\n" + fmt_table(rows2))
    if "threads" in res:
        th = res["threads"]
        counts = [k for k in next(iter(th["rows"].values())) if k != "auto_vs_best_fixed"]
        rows = [["condition", *(f"threads={k}" + (" (auto)" if k == "0" else "") for k in counts), "auto / best fixed"]]
        for cond, row in th["rows"].items():
            rows.append([cond, *(f"{row[k]['seconds']:.1f} s {row[k]['threads_used']}" for k in counts), f"{row['auto_vs_best_fixed']:.2f}"])
        out.append(f"Threads: the MLP slice ({len(th['slice']['zetas'])} widths × {len(th['slice']['ks'])} k × {th['slice']['seeds']} seeds, "
                   f"{th['steps']} steps) as one batched command, quiet and with two competing CPU-bound processes; [threads the runs used]\n"
                   + fmt_table(rows))
    return "\n\n".join(out)


def targets(res: dict) -> list[str]:
    """The issue's targets, each with the measured number and whether it is met."""
    lines = []
    if "steps" in res:
        for kind, ref_key, mup_key in (("wall", "ratio_vs_reference", "ratio_mup_vs_sp"), ("CPU time", "cpu_ratio_vs_reference", "cpu_ratio_mup_vs_sp")):
            worst = max(res["steps"], key=lambda r: max(r[ref_key].values()))
            w = max(worst[ref_key].values())
            lines.append(f"single-run step time ≤ 1.0× the reference, every setup ({kind}): worst {w:.2f}× ({worst['setup']} ζ={worst['width_mult']:g}) "
                         f"— {'met' if w <= 1.0 else 'NOT met'}")
            worst = max(res["steps"], key=lambda r: r[mup_key])
            lines.append(f"μP step time ≤ 1.02× SP ({kind}): worst {worst[mup_key]:.3f}× ({worst['setup']} ζ={worst['width_mult']:g}) "
                         f"— {'met' if worst[mup_key] <= 1.02 else 'NOT met'}")
    if "grid" in res:
        x = res["grid"]["rows"]["c_batched"]["x_vs_a"]
        lines.append(f"MLP grid slice ≥ 30× the runs/hour of one process per run: {x:.1f}× ({res['grid']['rows']['c_batched']['how']}) — {'met' if x >= 30 else 'NOT met'}")
    for cond, row in res.get("threads", {}).get("rows", {}).items():
        r = row["auto_vs_best_fixed"]
        lines.append(f"train.threads=0 within 10% of the best fixed count ({cond}): {r:.2f}× — {'met' if r <= 1.10 else 'NOT met'}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description="mupbench speed benchmark: steps/s per setup, runs/hour over the MLP grid slice, GPU table.")
    p.add_argument("--quick", action="store_true", help="a smaller benchmark, extrapolated (a few minutes)")
    p.add_argument("--parts", default="steps,grid,gpu", help="comma-separated: steps, grid, gpu, threads (threads: run on request only)")
    p.add_argument("--threads-steps", type=int, default=500, help="threads part: steps per run of the slice (default 500)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per step-time measurement (default 15; 5 with --quick)")
    p.add_argument("--target-s", type=float, default=None, help="seconds per repetition (default 1.0; 0.3 with --quick)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every loop of the steps part (default 1: less noise)")
    p.add_argument("--grid-threads", type=int, default=0,
                   help="torch CPU threads for every approach of the grid part (default 0: torch's default, as the launcher runs)")
    p.add_argument("--axes", action="store_true", help=f"steps part: both loops with {' '.join(AXES)} (the reference: AdamW + LambdaLR)")
    p.add_argument("--setups", default="", help=f"steps part: only these setups, comma-separated (default all: {','.join(SETUPS)})")
    p.add_argument("--flush-denormal", action="store_true",
                   help="grid part: every approach (reference included) flushes CPU denormals to zero (train.flush_denormal=true)")
    p.add_argument("--device", default="cpu", help="where the steps and grid parts train: cpu (default) or cuda (the gpu part always uses cuda)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/<time>.json)")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_child(args.child)
        return
    args.reps = args.reps or (5 if args.quick else 15)
    args.target_s = args.target_s or (0.3 if args.quick else 1.0)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(parts) - {"steps", "grid", "gpu", "threads"}
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose from steps, grid, gpu, threads")
    unknown = {s for s in args.setups.split(",") if s} - set(SETUPS)
    if unknown:
        p.error(f"--setups: unknown {sorted(unknown)}; choose from {', '.join(SETUPS)}")
    import torch

    res: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
                 "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
                             "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                             "load_avg_at_start": os.getloadavg()}}
    t0 = time.perf_counter()
    if "steps" in parts:
        print("part steps: single-run step time per setup", flush=True)
        res["steps"] = part_steps(args)
    if "grid" in parts:
        print("part grid: runs/hour over the MLP grid slice", flush=True)
        res["grid"] = part_grid(args)
    if "gpu" in parts:
        res["gpu"] = part_gpu(args)
    if "threads" in parts:
        print("part threads: the MLP slice batched, quiet and contended, per train.threads", flush=True)
        res["threads"] = part_threads(args)
    res["targets"] = targets(res)
    res["wall_s"] = time.perf_counter() - t0
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    out = args.out or RESULTS / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print()
    print(report(res))
    print()
    print("\n".join(f"target: {line}" for line in res["targets"]))
    print(f"\nload average {res['machine']['load_avg_at_start'][0]:.1f} → {res['machine']['load_avg_at_end'][0]:.1f} on {res['machine']['cores']} cores; "
          f"{res['wall_s'] / 60:.1f} min; JSON: {out}")


if __name__ == "__main__":
    main()
