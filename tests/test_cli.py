"""The CLI in-process (``main()`` with sys.argv, as the console script calls it): every bad input
is exit status 2, ONE stderr line ``mupbench: error: <the key to change>: ...`` and nothing written;
--help lists the real groups; shell completion completes them.

Real subprocess runs: tests/e2e/test_train_entrypoint.py and tests/e2e/test_bad_input_cli.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import TINY


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty directory the command runs in (runs land in cwd/outputs)."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # main() sets it; restored after the test
    return d


def run_main(*args: str, module: str = "mupbench.train") -> int:
    """``<module>.main()`` on ``args``; its exit status."""
    import importlib

    main = importlib.import_module(module).main
    argv = sys.argv
    sys.argv = [module, *args]
    try:
        main()
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv


def refused(capsys, cwd, *args: str, module: str = "mupbench.train") -> str:
    """Run a bad command: exit status 2, one stderr line, nothing under cwd; the line."""
    code = run_main(*args, module=module)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("mupbench: error: "), err
    assert not list(cwd.rglob("*")), f"written although nothing ran: {sorted(map(str, cwd.rglob('*')))}"
    return lines[0]


IMG = ["dataset=synthetic_images"]
TOK = ["model=transformer", "dataset=synthetic_tokens"]
NO_CUDA = [] if torch.cuda.is_available() else [("train.device=cuda", "train.device")]

# bad input -> the key the one line must name (first, right after "mupbench: error: ")
BAD = [
    ("model.width_mult=0.5", "model.width_mult"),
    ("model.width_mult=1.03", "model.width_mult"),
    ("model.width_mult=wide", "model.width_mult"),
    ("model.width_mult=inf", "model.width_mult"),
    ("model.widht_mult=2", "model.widht_mult"),
    ("model=resnet", "model=resnet"),
    ("model.base_width=0", "model.base_width"),
    ("model.hidden_layers=-1", "model.hidden_layers"),
    ("model.hidden_layers=0", "model.hidden_layers"),
    ("model.name=vgg", "model.name"),
    ("model=vgg", "dataset"),
    ("model=vit", "dataset"),
    ("model=transformer", "dataset"),
    ("model=mlp dataset=tiny_shakespeare", "dataset"),
    ("model=mlp dataset=synthetic_tokens", "dataset"),
    ("model=vit dataset=synthetic_images model.dropout=1.5", "model.dropout"),
    ("model=vgg dataset=synthetic_images model.dropout=-0.1", "model.dropout"),
    ("model=vgg dataset=synthetic_images model.dropout=1", "model.dropout"),
    ("model=vit dataset=synthetic_images model.heads=7", "model.heads"),
    ("model=vit dataset=synthetic_images model.heads=0", "model.heads"),
    ("model=vit dataset=synthetic_images model.width_mult=1.125", "model.width_mult"),
    ("model=vit dataset=synthetic_images model.patch_size=5", "model.patch_size"),
    ("model=vit dataset=synthetic_images model.patch_size=0", "model.patch_size"),
    ("model=vit dataset=synthetic_images model.blocks=0", "model.blocks"),
    ("model=vit dataset=synthetic_images model.mlp_ratio=0", "model.mlp_ratio"),
    ("model=vit dataset=synthetic_images model.pos_start=2", "model.pos_start"),
    ("model=transformer dataset=synthetic_tokens model.attn_out_proj=maybe", "model.attn_out_proj"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=-1e-3", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("optimizer.betas=[0.9]", "optimizer.betas"),
    ("optimizer.betas=[1.5,0.999]", "optimizer.betas"),
    ("optimizer.betas=[0.9,1.0]", "optimizer.betas"),
    ("optimizer.betas=[0.9,0.99,0.999]", "optimizer.betas"),
    ("optimizer.eps=-1", "optimizer.eps"),
    ("optimizer.eps=nan", "optimizer.eps"),  # 0 is valid (torch.optim.Adam accepts it; the mup oracle uses it)
    ("optimizer.impl=fast", "optimizer.impl"),
    ("optimizer=sgd optimizer.momentum=1.5", "optimizer.momentum"),
    ("optimizer=sgd optimizer.momentum=-0.1", "optimizer.momentum"),
    ("optimizer=lion", "optimizer=lion"),
    ("optimizer.name=sgd", "optimizer.name"),
    ("parametrization=ntk optimizer=sgd", "optimizer"),
    ("parametrization=mf optimizer=sgd", "optimizer"),
    ("parametrization=abc", "parametrization=abc"),
    ("parametrization.name=xp", "parametrization.name"),
    ("parametrization.init_scale=-1", "parametrization.init_scale"),
    ("parametrization.attn_scale=huge", "parametrization.attn_scale"),
    ("parametrization.kernel_fan_in=sometimes", "parametrization.kernel_fan_in"),
    ("train.steps=0", "train.steps"),
    ("train.steps=-5", "train.steps"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=100000", "train.batch_size"),
    ("train.eval_every=0", "train.eval_every"),
    ("train.eval_batches=0", "train.eval_batches"),
    ("train.device=tpu", "train.device"),
    ("train.device=cuda:x", "train.device"),
    *NO_CUDA,
    ("train.dtype=float16", "train.dtype"),
    ("train.ckpt_every=-1", "train.ckpt_every"),
    ("train.log_every_s=-1", "train.log_every_s"),
    ("train.threads=-2", "train.threads"),
    ("train.compile=sometimes", "train.compile"),
    ("seed=-1", "seed"),
    ("seed=one", "seed"),
    ("name=a/b", "name"),
    ("name=", "name"),
    ("force=perhaps", "force"),
    ("print_params=maybe", "print_params"),
    ("dataset.root=/no/such/dir", "dataset.root"),
    ("dataset.split_seed=-1", "dataset.split_seed"),
    ("dataset.noise=-1", "dataset.noise"),
    ("dataset.n_train=0", "dataset.n_train"),
    ("dataset.features=0", "dataset.features"),
    ("dataset=synthetic_images dataset.classes=1", "dataset.classes"),
    ("model=transformer dataset=synthetic_tokens dataset.vocab=1", "dataset.vocab"),
    ("model=transformer dataset=synthetic_tokens dataset.n_val=10", "dataset.n_val"),
    ("model=transformer dataset=synthetic_tokens dataset.sharpness=-1", "dataset.sharpness"),
    ("model=transformer dataset=synthetic_tokens dataset.context=0", "dataset.context"),
    ("model=transformer dataset=tiny_shakespeare dataset.context=0", "dataset.context"),
    ("model=transformer dataset=tiny_shakespeare dataset.context=30000", "dataset.context"),
    ("dataset=cifar10 dataset.verify=sure", "dataset.verify"),
    ("dataset.standardize=true", "dataset.standardize"),  # not a key of dataset=synthetic
    ("dataset=nope", "dataset=nope"),
]


@pytest.mark.parametrize("override, key", BAD, ids=[o for o, _ in BAD])
def test_bad_value_is_one_line_naming_the_key(capsys, cwd, override, key):
    line = refused(capsys, cwd, *TINY, *override.split())
    assert line.startswith(f"mupbench: error: {key}: ") or line.startswith(f"mupbench: error: {key} "), line


def test_issue_cases_say_what_to_do(capsys, cwd):
    assert "pick heads that divide model.base_width" in refused(capsys, cwd, *TINY, *IMG, "model=vit", "model.heads=7")
    line = refused(capsys, cwd, *TINY, "model=mlp", "dataset=tiny_shakespeare")
    assert "use dataset=synthetic|california_housing|cifar10|synthetic_images (or model=transformer|custom)" in line
    assert "use dataset=cifar10|synthetic_images (or model=mlp|custom)" in refused(capsys, cwd, *TINY, "model=vgg")
    assert "1 - p" in refused(capsys, cwd, *TINY, *IMG, "model=vit", "model.dropout=1.5")


BAD_MULTIRUN = [
    ("optimizer.lr=1e-3,0", "optimizer.lr"),
    ("model.width_mult=1,2,0.5 seed=0,1", "model.width_mult"),
    ("optimizer.betas=[0.9,0.999],[0.9]", "optimizer.betas"),
    ("model=mlp,vgg", "dataset"),
]


@pytest.mark.parametrize("overrides, key", BAD_MULTIRUN, ids=[o for o, _ in BAD_MULTIRUN])
def test_bad_point_of_a_multirun_is_refused_before_any_run(capsys, cwd, overrides, key):
    """One line per distinct problem (here: one); no point was run, no sweep dir is left."""
    assert f"mupbench: error: {key}: " in refused(capsys, cwd, "-m", *TINY, *overrides.split())


BAD_COORD = [
    ("coord.widths=[0.5,1]", "coord.widths"),
    ("coord.widths=[]", "coord.widths"),
    ("coord.widths=[1,1.03]", "coord.widths"),
    ("coord.widths=[1,1]", "coord.widths"),
    ("coord.steps=[-1,3]", "coord.steps"),
    ("coord.seeds=[0,0]", "coord.seeds"),
    ("coord.parametrizations=[sp,xp]", "coord.parametrizations"),
    ("coord.max_slope=0", "coord.max_slope"),
    ("coord.out=''", "coord.out"),
]


@pytest.mark.parametrize("override, key", BAD_COORD, ids=[o for o, _ in BAD_COORD])
def test_bad_coord_check_value(capsys, cwd, override, key):
    line = refused(capsys, cwd, "dataset=synthetic", "train.device=cpu", override, module="mupbench.coord_check")
    assert line.startswith(f"mupbench: error: {key}: "), line


# ---- a local copy that is not the dataset (dataset.verify=false): one DataError line ----

def test_altered_california_file_unverified(capsys, cwd, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cal_housing.data").write_text("\n".join(["1,2,3,4,5,6,7,8"] * 5000))  # a column short
    line = refused(capsys, cwd, *TINY, "dataset=california_housing", f"dataset.root={root}", "dataset.verify=false")
    assert "has 8 columns" in line and "dataset.verify=true" in line


def test_truncated_cifar_pickle_unverified(capsys, cwd, tmp_path):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    good = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10}, protocol=4)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        (folder / name).write_bytes(good[:100])
    line = refused(capsys, cwd, *TINY, "dataset=cifar10", f"dataset.root={folder.parent}", "dataset.verify=false")
    assert "data_batch_1 is not a CIFAR-10 batch" in line and "dataset.verify=true" in line


def test_missing_dataset_files_name_the_root(capsys, cwd, tmp_path):
    line = refused(capsys, cwd, *TINY, "dataset=cifar10", f"dataset.root={tmp_path}")
    assert "not found; dataset.root must hold cifar-10-batches-py/" in line


def test_missing_dataset_files_in_a_multirun_leave_no_sweep_dir(capsys, cwd, tmp_path):
    """Found by the first job (the files are not read before): its dir and the sweep dir go."""
    line = refused(capsys, cwd, "-m", *TINY, "seed=0,1", "dataset=cifar10", f"dataset.root={tmp_path}")
    assert "not found; dataset.root must hold cifar-10-batches-py/" in line


def test_refused_job_keeps_a_sweep_dir_with_other_runs(capsys, cwd, tmp_path):
    done = cwd / "outputs" / "default" / "earlier"
    done.mkdir(parents=True)
    (done / "result.json").write_text("{}")
    assert run_main("-m", *TINY, "seed=0,1", "dataset=cifar10", f"dataset.root={tmp_path}") == 2
    assert sorted(p.name for p in (cwd / "outputs" / "default").iterdir()) == ["earlier", "multirun.yaml"]
    capsys.readouterr()


# ---- directories Hydra cannot create or write ----

def test_run_dir_under_a_regular_file(capsys, cwd, tmp_path):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, cwd, *TINY, f"hydra.run.dir={tmp_path}/file/run")
    assert line.startswith("mupbench: error: hydra.run.dir: cannot write ") and "Not a directory" in line


def test_sweep_dir_under_a_regular_file(capsys, cwd, tmp_path):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, cwd, "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path}/file/sweep")
    assert line.startswith("mupbench: error: hydra.sweep.dir: cannot write ") and "choose a writable directory" in line


@pytest.fixture
def immutable(tmp_path):
    d = tmp_path / "immutable"
    d.mkdir()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here (needs root and a filesystem that supports it)")
    yield d
    subprocess.run(["chattr", "-i", str(d)], check=True)


def test_run_dir_in_an_immutable_dir(capsys, cwd, immutable):
    line = refused(capsys, cwd, *TINY, f"hydra.run.dir={immutable}/run")
    assert line.startswith("mupbench: error: hydra.run.dir: cannot write ") and "Operation not permitted" in line


def test_sweep_dir_in_an_immutable_dir(capsys, cwd, immutable):
    line = refused(capsys, cwd, "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={immutable}/sweep")
    assert line.startswith("mupbench: error: hydra.sweep.dir: cannot write ")


def test_multirun_with_cfg_says_to_drop_m(capsys, cwd):
    line = refused(capsys, cwd, "-m", "hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher")
    assert "drop -m" in line and "mupbench-train hydra/launcher=slurm --cfg hydra -p hydra.launcher" in line


@pytest.mark.parametrize("args, says", [
    (["train.steps=3", "-m", "seed=0,1"], "arguments: unrecognized arguments: seed=0,1; Hydra's flags (-m, --cfg, --info, ...) go before"),
    (["--cfg", "everything"], "arguments: argument --cfg/-c: invalid choice: 'everything'"),
    (["--info", "nothing"], "arguments: argument --info/-i: invalid choice: 'nothing'"),
], ids=["flag-after-overrides", "bad-cfg", "bad-info"])
def test_argument_errors_are_one_line(capsys, cwd, args, says):
    assert says in refused(capsys, cwd, *args)


def test_documented_launcher_profile_command_works(capsys, cwd):
    assert run_main("hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher") == 0
    assert "SlurmLauncher" in capsys.readouterr().out and not list(cwd.rglob("*"))


def test_print_params_leaves_nothing(capsys, cwd):
    assert run_main(*TINY, "print_params=true") == 0
    assert "parameters" in capsys.readouterr().out and not list(cwd.rglob("*"))


# ---- nothing is removed that an earlier run wrote ----

def test_refusal_keeps_an_earlier_runs_dir(capsys, cwd):
    run_dir = cwd / "kept"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "result.json").write_text("{}")
    assert run_main(*TINY, "optimizer.eps=-1", f"hydra.run.dir={run_dir}") == 2
    assert (run_dir / "result.json").read_text() == "{}"
    capsys.readouterr()


def test_refusal_keeps_an_earlier_log(capsys, cwd):
    run_dir = cwd / "kept"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("an earlier attempt\n")
    assert run_main(*TINY, "optimizer.eps=-1", f"hydra.run.dir={run_dir}") == 2
    assert (run_dir / "train.log").read_text().startswith("an earlier attempt")
    capsys.readouterr()


# ---- --help, --hydra-help, shell completion ----

def test_help_lists_real_groups_one_line_each(capsys, cwd):
    assert run_main("--help") == 0
    out = capsys.readouterr().out
    groups = out.split("== Config groups")[1].split("== Config (")[0]
    assert "schema" not in groups
    for group, options in {"model": "mlp*, transformer, vgg, vit", "parametrization": "mf, mup*, ntk, sp",
                           "optimizer": "adam*, ", "hydra/launcher": "basic*, batched"}.items():
        assert f"  {group} " in groups and options in groups
    assert "+experiment" in groups and "hydra/help" not in groups
    assert "width_mult: 1.0" in out.split("== Config (")[1]  # the composed config follows
    assert not list(cwd.rglob("*"))


def test_help_marks_the_chosen_options(capsys, cwd):
    assert run_main("--help", "model=vgg", "dataset=cifar10") == 0
    out = capsys.readouterr().out
    assert "mlp, transformer, vgg*, vit" in out and "cifar10*" in out


def test_coord_check_help(capsys, cwd):
    assert run_main("--help", module="mupbench.coord_check") == 0
    out = capsys.readouterr().out
    assert out.startswith("python -m mupbench.coord_check: the coordinate check") and "california_housing*" in out
    assert "  logger " not in out  # a group coord_check does not compose


def test_hydra_help_is_hydras(capsys, cwd):
    assert run_main("--hydra-help") == 0
    out = capsys.readouterr().out
    assert "Hydra (" in out and "--shell-completion" in out and "== Flags ==" in out


@pytest.fixture
def app_groups(monkeypatch):
    """The ConfigStore's groups as the app registers them: a test that stores a schema inside a
    group (tests/test_models.py does, for its own compose) leaks it into every later completion."""
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    for group in ("model", "dataset", "optimizer", "parametrization"):
        node = repo.get(group, {})
        for name in [n for n in node if n.endswith("schema.yaml")]:
            monkeypatch.delitem(node, name)


@pytest.mark.parametrize("line, expect", [
    ("mupbench-train model=", {"model=mlp", "model=transformer", "model=vgg", "model=vit", "model=custom"}),
    ("mupbench-train dataset=synthetic_", {"dataset=synthetic_images", "dataset=synthetic_tokens"}),
    ("mupbench-train parametrization=", {"parametrization=mf", "parametrization=mup", "parametrization=ntk", "parametrization=sp"}),
    ("mupbench-train +experiment=vgg", {"+experiment=vgg_cifar10", "+experiment=vgg_cifar10_quick"}),
    ("mupbench-train mod", {"model=", "model."}),
])
def test_shell_completion_completes_groups(capsys, cwd, monkeypatch, app_groups, line, expect):
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    assert run_main("-sc", "query=bash") == 0
    assert set(capsys.readouterr().out.split()) == expect


def test_shell_completion_install_script(capsys, cwd):
    assert run_main("--shell-completion", "install=bash") == 0
    assert "complete -o nospace -o default -F hydra_bash_completion" in capsys.readouterr().out


def test_disk_full_while_writing_a_checkpoint_is_one_line(cwd, capsys, monkeypatch):
    """torch.save's zip writer on a full disk raises RuntimeError('[enforce fail at
    inline_container.cc:672] ...'): the command ends with one line naming the file and what to
    do (issue 11 item 4), not a traceback."""
    import torch

    def full_disk(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    code = run_main("train.steps=20", "train.eval_every=10", "train.ckpt_every=5", "train.device=cpu")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("mupbench: error: cannot write ") and "checkpoint.pt" in lines[0] and "free space" in lines[0]
    assert not list(cwd.rglob("*.part"))  # the torn temp file was removed
