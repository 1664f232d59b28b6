"""docs/config-reference.md, generated from the schemas and their rules so that it cannot drift:

    python -m mupbench.config_reference > docs/config-reference.md

(tests/test_config.py checks that the committed file equals this output.)
"""

from __future__ import annotations

import dataclasses
import importlib
import sys

from omegaconf import OmegaConf

from mupbench import config as C
from mupbench import schedules as S
from mupbench.data import DATASETS
from mupbench.models import MODELS
from mupbench.rules import Rule, show

# the checks across keys (mupbench.config.validate and the models' and datasets' check functions)
CROSS_CHECKS = [
    ("model.width_mult, model.base_width", "base_width·ζ is a positive integer (every width of the model)"),
    ("model.heads", "vit, transformer: divides model.base_width and base_width·ζ (d_head is an integer at every width)"),
    ("model.patch_size", "vit: divides the images' height and width"),
    ("dataset", "the model takes the dataset's inputs: mlp regression/classification, vgg/vit C×H×W images, "
                "transformer token windows (the message lists the datasets that fit); vgg: images ≥ 16×16"),
    ("model.name, dataset.name, optimizer.name", "equal the chosen group option (choose with the group: model=NAME)"),
    ("optimizer", "parametrization=ntk or mf needs optimizer=adam or adam_atan2"),
    ("schedule.warmup_frac, schedule.decay_frac", "cosine, wsd: the warmup and the decay fit in the run (sum ≤ 1)"),
    ("parametrization.depth_alpha", "set: a model with residual blocks (vit, transformer: model.base_blocks); parametrization "
                                    "sp (residual multiplier only) or mup; under mup optimizer=adam or adam_atan2"),
    ("parametrization.depth_wd_follows_lr", "true: a model with residual blocks (vit, transformer, custom); it acts with "
                                            "optimizer.wd_mode=independent under a μP depth rule (the other modes already follow the lr)"),
    ("train.device", "cuda, cuda:N: a CUDA GPU is visible"),
    ("train.batch_size", "≤ the rows of the dataset's train and val splits (synthetic, synthetic_images, and the "
                         "verified paper datasets; known without loading)"),
    ("dataset.n_train, n_val, n_test", "synthetic_tokens: more tokens than dataset.context"),
    ("coord.widths", "every width builds as model.width_mult (integer widths, heads that split them)"),
    ("coord.axis, coord.depth_alphas", "axis=depth: a model with residual blocks (model.base_blocks: transformer, vit, custom); "
                                       "each depth rule passes parametrization.depth_alpha's checks under each coord.parametrizations"),
    ("hydra.run.dir, hydra.sweep.dir", "can be created and written (said when Hydra cannot; "
                                       "mupbench.config.check_writable_dir for launchers)"),
]
COORD_YAML = C.CONF_DIR / "coord_check.yaml"


def _type(field: dataclasses.Field) -> str:
    return str(field.type).replace("typing.", "").replace("List", "list").replace("Optional[str]", "str or null")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "—"
    return "???" if value == "???" else show(value)


def _doc(rule: Rule | None) -> str:
    if rule is None:
        return "(no rule)"
    return rule.doc + (f"; {rule.hint}" if rule.hint else "")


def _rows(schema, rules: dict[str, Rule], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    rows = []
    for f in dataclasses.fields(schema):
        if f.name in skip:
            continue
        rows.append(f"| `{prefix}{f.name}` | {_type(f)} | `{_default(f)}` | {_doc(rules.get(f.name))} |")
    return rows


def sections() -> list[tuple[str, object, dict[str, Rule], str, tuple[str, ...]]]:
    """(title, schema, rules, key prefix, fields not listed there) for every schema of conf/."""
    out = [("Top level", C.Config, C.TOP_CHECKS, "", ("model", "dataset", "parametrization", "optimizer", "schedule", "train", "logger")),
           ("train", C.TrainConfig, C.TRAIN_CHECKS, "train.", ()),
           ("parametrization (sp, mup, ntk, mf)", C.ParametrizationConfig, C.PARAMETRIZATION_CHECKS, "parametrization.", ()),
           ("optimizer=adam", C.AdamConfig, C.OPTIMIZER_CHECKS["adam"], "optimizer.", ()),
           ("optimizer=adam_atan2", C.AdamAtan2Config, C.OPTIMIZER_CHECKS["adam_atan2"], "optimizer.", ()),
           ("optimizer=sgd", C.SGDConfig, C.OPTIMIZER_CHECKS["sgd"], "optimizer.", ())]
    out += [(f"schedule={option}", schema, S.checks(schema), "schedule.", ()) for option, schema in S.OPTIONS.items()]
    for group, registry in (("model", MODELS), ("dataset", DATASETS)):
        for option, path in registry.items():
            module = importlib.import_module(path)
            out.append((f"{group}={option}", module.Config, module.CHECKS, f"{group}.", ()))
    return out


def render() -> str:
    lines = ["# Config reference", "",
             "Generated from the schemas (mupbench/config.py, the models' and datasets' `Config`) and their rules by",
             "`python -m mupbench.config_reference > docs/config-reference.md`; do not edit by hand.",
             "A value that breaks a rule ends the command before any work with one line,",
             "`mupbench: error: <key>: <value> is not <rule>; <hint>`, and exit status 2.",
             "A key that does not exist, or a value of the wrong type, is refused the same way when the config is composed.",
             "`logger.*` (the experiment trackers) is checked by mupbench.trackers.", ""]
    header = ["| key | type | default | valid values |", "|---|---|---|---|"]
    for title, schema, rules, prefix, skip in sections():
        lines += [f"## {title}", "", *header, *_rows(schema, rules, prefix, skip), ""]
    coord = OmegaConf.load(COORD_YAML).coord
    lines += ["## coord (python -m mupbench.coord_check)", "", *header]
    for key, rule in C.COORD_CHECKS.items():
        value = coord.get(key)
        kind = "list" if OmegaConf.is_list(value) else ("str or null" if value is None else type(value).__name__)
        shown = show(OmegaConf.to_container(value) if OmegaConf.is_list(value) else value)
        lines.append(f"| `coord.{key}` | {kind} | `{shown}` | {_doc(rule)} |")
    lines += ["", "## Checks across keys", "", "| keys | check |", "|---|---|",
              *(f"| `{keys}` | {text} |" for keys, text in CROSS_CHECKS), ""]
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
