"""mupbench.config: every key has a rule, every rule is in the generated reference, the shipped
configs pass, and a bad value is a ConfigError naming the key to change."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from mupbench import config as C
from mupbench import config_reference, rules
from mupbench.config import ConfigError, compose

REPO = C.CONF_DIR.parent
EXPERIMENTS = sorted(p.stem for p in (C.CONF_DIR / "experiment").glob("*.yaml"))


def test_reference_doc_is_the_generated_one():
    """docs/config-reference.md is `python -m mupbench.config_reference` output: regenerate it."""
    assert (REPO / "docs" / "config-reference.md").read_text() == config_reference.render()


@pytest.mark.parametrize("title, schema, checks, prefix, skip", config_reference.sections(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_key_has_a_rule_and_every_rule_a_key(title, schema, checks, prefix, skip):
    fields = {f.name for f in dataclasses.fields(schema)} - set(skip)
    assert fields - checks.keys() == set(), f"{title}: keys without a rule"
    assert checks.keys() - fields == set(), f"{title}: rules without a key"


def test_coord_rules_cover_the_coord_schema():
    from mupbench.config import CoordCheckOptions

    assert {f.name for f in dataclasses.fields(CoordCheckOptions)} == set(C.COORD_CHECKS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_shipped_experiments_pass(experiment):
    compose([f"+experiment={experiment}"])


@pytest.mark.parametrize("overrides", [[], ["model=vgg", "dataset=cifar10"], ["model=vit", "dataset=synthetic_images"],
                                       ["model=transformer", "dataset=tiny_shakespeare"], ["optimizer=sgd", "parametrization=sp"],
                                       ["model=vit", "dataset=synthetic_images", "model.width_mult=1.25"]])
def test_good_configs_pass(overrides):
    compose(overrides)


def test_coord_check_config_passes():
    compose([], config_name="coord_check")


@pytest.mark.parametrize("overrides, key", [
    (["optimizer.betas=[0.9]"], "optimizer.betas"),
    (["model=vit", "dataset=synthetic_images", "model.dropout=1.5"], "model.dropout"),
    (["model.base_width=0"], "model.base_width"),
    (["model=vgg"], "dataset"),
    (["model=vit", "dataset=synthetic_images", "model.heads=5"], "model.heads"),
    (["model=mlp", "dataset=tiny_shakespeare"], "dataset"),
    (["model.hidden_layers=-1"], "model.hidden_layers"),
])
def test_issue_cases_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert e.value.key == key and str(e.value).startswith(f"{key}: ") and "\n" not in str(e.value)


def test_sweep_points_validated_one_by_one_are_fast_enough_to_call_per_point():
    """validate reads the config only: the same answer for a copy, and no file is touched."""
    cfg = compose(["model=vit", "dataset=synthetic_images"])
    for zeta in (1, 2, 4):
        c = cfg.copy()
        c.model.width_mult = float(zeta)
        C.validate(c)


@pytest.mark.parametrize("rule, good, bad", [
    (rules.integer(ge=1), [1, 5], [0, -1, 1.5, True, "1"]),
    (rules.number(gt=0), [1e-9, 3], [0, -1, float("nan"), float("inf"), False]),
    (rules.probability(), [0, 0.5], [1, 1.5, -0.1]),
    (rules.one_of("a", "b"), ["a"], ["c", None]),
    (rules.flag(), [True, False], [1, "true"]),
    (rules.name_text(), ["default", "sweep-1"], ["", "a/b", ".hidden", "a b"]),
    (rules.list_of(rules.number(ge=0, lt=1), length=2), [[0.9, 0.999]], [[0.9], [1.5, 0.9], "ab", [0.1, 0.2, 0.3]]),
    (rules.list_of(rules.integer(ge=0), unique=True), [[0, 1]], [[], [0, 0], [-1]]),
])
def test_rules(rule, good, bad):
    assert all(rule.problem(v) is None for v in good)
    for v in bad:
        assert rule.problem(v).endswith(rule.doc + (f"; {rule.hint}" if rule.hint else "")), v


def test_writable_dir_problem(tmp_path):
    assert C.writable_dir_problem(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists()  # the probe leaves nothing
    (tmp_path / "file").write_text("x")
    assert C.writable_dir_problem(tmp_path / "file" / "run") == f"{tmp_path / 'file'} is a file, not a directory"
    assert C.writable_dir_problem(tmp_path / "file") == f"{tmp_path / 'file'} is a file, not a directory"
    with pytest.raises(ConfigError, match=r"^hydra.sweep.dir: .* is a file, not a directory; choose a writable directory with hydra.sweep.dir=DIR$"):
        C.check_writable_dir(tmp_path / "file" / "x", "hydra.sweep.dir")


def test_writable_dir_problem_immutable(tmp_path):
    d = tmp_path / "immutable"
    d.mkdir()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        assert C.writable_dir_problem(d / "run") == f"cannot write in {d} (Operation not permitted)"
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)


def test_schemas_are_not_group_options(monkeypatch):
    """--help and shell completion list a group's options from the ConfigStore too: the schemas
    register outside the groups (config.schema_name), and conf/<group>/*.yaml extend them."""
    from hydra.core.config_store import ConfigStore

    fresh = object.__new__(ConfigStore)
    ConfigStore.__init__(fresh)
    monkeypatch.setattr(ConfigStore, "instance", staticmethod(lambda: fresh))
    C.register_configs()
    assert {k for k, v in fresh.repo.items() if isinstance(v, dict)} == set()  # no group at all
    assert {"config_schema.yaml", "schema_model_mlp.yaml", "schema_dataset_cifar10.yaml", "schema_optimizer_adam.yaml",
            "schema_parametrization.yaml"} <= fresh.repo.keys()
    for yaml in C.CONF_DIR.glob("*/*.yaml"):
        if yaml.parent.name in ("model", "dataset", "optimizer", "parametrization"):
            assert f"- /{C.schema_name(yaml.parent.name, None if yaml.parent.name == 'parametrization' else yaml.stem)}@_here_" in yaml.read_text()
