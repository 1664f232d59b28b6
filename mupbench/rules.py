"""Value rules for config keys: each says what a valid value is, in the words the error and the
reference table (docs/config-reference.md) both use.

A leaf module (no torch, no Hydra), so the schema modules (config.py, models/, data/) can declare
the rules of their own fields next to them: ``CHECKS = {"field": rule}``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Rule:
    """``doc``: what a valid value is ("an integer ≥ 1"); ``test`` says whether ``value`` is one."""

    doc: str
    test: Callable[[Any], bool]
    hint: str = ""  # how to fix it, appended to the message

    def problem(self, value: Any) -> str | None:
        try:
            ok = bool(self.test(value))
        except (TypeError, ValueError, AttributeError):
            ok = False
        if ok:
            return None
        return f"{show(value)} is not {self.doc}" + (f"; {self.hint}" if self.hint else "")

    def check(self, key: str, value: Any) -> None:
        if (problem := self.problem(value)) is not None:
            raise ConfigError(key, problem)


def show(value: Any) -> str:
    """A value as the user would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ",".join(show(v) for v in value) + "]"
    return str(value)


def _bounds(ge=None, gt=None, le=None, lt=None) -> tuple[str, Callable[[float], bool]]:
    parts, tests = [], []
    for sym, bound, op in (("≥", ge, float.__ge__), (">", gt, float.__gt__), ("≤", le, float.__le__), ("<", lt, float.__lt__)):
        if bound is not None:
            parts.append(f"{sym} {bound:g}")
            tests.append(lambda v, b=bound, op=op: op(float(v), float(b)))
    return " and ".join(parts), lambda v: all(t(v) for t in tests)


def integer(ge=None, gt=None, le=None, lt=None, hint: str = "") -> Rule:
    text, ok = _bounds(ge, gt, le, lt)
    return Rule(f"an integer {text}".strip(), lambda v: isinstance(v, int) and not isinstance(v, bool) and ok(v), hint)


def number(ge=None, gt=None, le=None, lt=None, hint: str = "") -> Rule:
    text, ok = _bounds(ge, gt, le, lt)
    return Rule(f"a finite number {text}".strip(),
                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v), hint)


def probability() -> Rule:
    return number(ge=0, lt=1, hint="a dropout probability p keeps 1 - p of the units")


def one_of(*choices: Any, pattern: str | None = None, hint: str = "") -> Rule:
    """One of ``choices`` (or, with ``pattern``, a string matching it, documented as written)."""
    names = [show(c) for c in choices]
    text = "one of " + ", ".join(names)
    return Rule(text, lambda v: v in choices or (pattern is not None and isinstance(v, str) and re.fullmatch(pattern, v)), hint)


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def name_text() -> Rule:
    """A path-safe, non-empty name (it becomes a directory name)."""
    return Rule("a non-empty name without /, spaces or a leading dot",
                lambda v: isinstance(v, str) and re.fullmatch(r"[^/\s.][^/\s]*", v) is not None,
                "it names the folder outputs/NAME")


def optional_dir(hint: str = "") -> Rule:
    return Rule("null or an existing directory", lambda v: v is None or Path(str(v)).expanduser().is_dir(), hint)


def optional_path() -> Rule:
    return Rule("null or a path", lambda v: v is None or (isinstance(v, str) and v.strip() != ""))


def list_of(item: Rule, min_len: int = 1, length: int | None = None, unique: bool = False) -> Rule:
    if length is not None:
        size = f"a list of exactly {length}"
    else:
        size = f"a list of {min_len} or more"
    doc = f"{size}{' distinct' if unique else ''} values, each {item.doc}"

    def ok(v: Sequence) -> bool:
        v = list(v)
        n_ok = len(v) == length if length is not None else len(v) >= min_len
        return n_ok and (not unique or len(set(v)) == len(v)) and all(item.problem(x) is None for x in v)

    return Rule(doc, lambda v: not isinstance(v, (str, bytes)) and ok(v))


def apply(rules: dict[str, Rule], node: Any, prefix: str) -> None:
    """Check every key of ``node`` that has a rule; the first bad one raises ConfigError."""
    for key, rule in rules.items():
        if key in node:
            rule.check(f"{prefix}{key}", node[key])
