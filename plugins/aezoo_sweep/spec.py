"""A sweep as a value: its search space, metric, budget and search settings, parsed from
``--param PATH=DIST`` strings and sweep files (TOML/YAML/JSON) with the one-line errors
of spec files. No Optuna here (``Param.suggest`` is duck-typed on the trial).

Distributions: ``float(a,b)``, ``log(a,b)`` (log-uniform float), ``int(a,b)`` (also
``int(a,b,step)``, ``float(a,b,step)``), ``logint(a,b)`` and ``choice(v1,v2,...)`` (each
``v`` JSON, else a plain string: ``choice([16,8,8],[32,16,8])``, ``choice(adam,sgd)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from aezoo.errors import SpecError, UsageError
from aezoo.specfile import read_config
from aezoo.specs import Strict, validate

Kind = Literal["float", "log", "int", "logint", "choice"]
FIX = "write float(a,b), log(a,b), int(a,b), logint(a,b) or choice(v1,v2,...)"


class Param(Strict):
    """One dimension of the search space."""

    kind: Kind
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:  # Strict refuses inf and NaN bounds already
        kind, low, high, step = self.kind, self.low, self.high, self.step
        span = f"{kind}({_num(low)},{_num(high)})"
        if kind == "choice":
            if not self.choices:
                raise ValueError("choice() needs at least one value")
            if len({json.dumps(c, sort_keys=True) for c in self.choices}) != len(self.choices):
                raise ValueError("choice() lists a value twice")
        elif low is None or high is None:
            raise ValueError(f"{kind}() needs a low and a high bound")
        elif low >= high:
            raise ValueError(f"{span}: low must be below high")
        elif kind in ("log", "logint") and low <= 0:
            raise ValueError(f"{span}: a log scale needs low > 0")
        elif kind in ("int", "logint") and not (low.is_integer() and high.is_integer()):
            raise ValueError(f"{kind}() bounds must be whole numbers")
        elif step is not None and (kind in ("log", "logint") or not step > 0):
            raise ValueError(f"a step needs float() or int() and a value > 0, "
                             f"not {kind}() step {_num(step)}")
        elif step is not None and kind == "int" and not step.is_integer():
            raise ValueError("int() takes a whole-number step")
        return self

    def values(self) -> list[Any]:
        """Values worth trying when the space is checked: the bounds, or every choice."""
        if self.kind == "choice":
            return list(self.choices or [])
        bounds = [self.low, self.high]
        return [int(v or 0) for v in bounds] if "int" in self.kind else bounds

    def text(self) -> str:
        """The ``--param`` form of this distribution."""
        if self.kind == "choice":
            return "choice(" + ",".join(json.dumps(c) for c in self.choices or []) + ")"
        args = [self.low, self.high] + ([self.step] if self.step else [])
        return f"{self.kind}({','.join(map(_num, args))})"

    def suggest(self, trial: Any, path: str) -> Any:
        """A value from an Optuna trial (a choice travels as JSON text: Optuna's choices
        must be scalars)."""
        log = self.kind.startswith("log")
        if self.kind == "choice":
            texts = [json.dumps(c) for c in self.choices or []]
            return json.loads(trial.suggest_categorical(path, texts))
        if "int" in self.kind:
            return trial.suggest_int(path, int(self.low or 0), int(self.high or 0),
                                     step=int(self.step or 1), log=log)
        return trial.suggest_float(path, self.low, self.high, step=self.step, log=log)


def _num(value: float | None) -> str:
    if value is None:
        return "None"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


class SweepSpec(Strict):
    """A sweep file (or the ``aezoo sweep`` flags): what to search, how, and for how long."""

    variant: str | None = None  # the variant every trial starts from
    config: str | None = None  # a run spec file every trial starts from
    set: list[str] = Field(default_factory=list)  # KEY=VALUE overrides of every trial
    params: dict[str, Param] = Field(default_factory=dict)  # dotted spec path -> distribution
    metric: str = "val_loss"  # any per-epoch value of metrics.jsonl
    direction: Literal["minimize", "maximize"] | None = None  # default: see goal
    trials: int = Field(20, ge=1, le=100_000)  # trials in the study, all processes
    timeout: float | None = Field(None, gt=0)  # seconds this process may start trials for
    sampler: Literal["tpe", "random", "cmaes", "qmc"] = "tpe"
    pruner: Literal["median", "hyperband", "successive-halving", "none"] = "median"
    seed: int | None = 0  # the sampler's seed (None: random)
    study: str | None = None  # study name (default: the sweep directory's)
    storage: str | None = None  # an Optuna storage URL (default: a journal file in OUT)
    callbacks: list[str] = Field(default_factory=list)  # callbacks of every trial

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if not self.params:
            raise ValueError("a sweep needs at least one param, e.g. --param "
                             "'train.lr=log(1e-4,1e-2)'")
        for path in self.params:
            if "" in path.split("."):
                raise ValueError(f"param path '{path}' is not a dotted spec key")
        return self

    @property
    def goal(self) -> str:
        """``direction``, else maximize for psnr/ssim-like metrics and minimize the rest."""
        tail = self.metric.rpartition("_")[2].lower()
        return self.direction or ("maximize" if tail in ("psnr", "ssim") else "minimize")


def _split_args(text: str) -> list[str]:
    """``a, [1,2], "x,y"`` -> ``["a", "[1,2]", '"x,y"']`` (commas at the top level)."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    return [*parts, tail] if tail or parts else []


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _dist(text: str, where: str) -> Param:
    text = text.strip()
    name, sep, rest = text.partition("(")
    name = name.strip().lower()
    if not sep or not rest.endswith(")") or name not in get_args(Kind):
        raise SpecError(f"invalid param {where}: '{text[:60]}' is not a distribution", FIX,
                        key=where)
    args = _split_args(rest[:-1])
    if name == "choice":
        return _param({"kind": name, "choices": [_value(a) for a in args]}, where)
    numbers: list[float] = []
    for arg in args:
        try:
            numbers.append(float(arg))
        except ValueError:
            raise SpecError(f"invalid param {where}: {name}() takes numbers, not '{arg[:30]}'",
                            FIX, key=where) from None
    if len(numbers) not in (2, 3) or (len(numbers) == 3 and name in ("log", "logint")):
        raise SpecError(f"invalid param {where}: {name}() takes (low, high"
                        f"{'' if name in ('log', 'logint') else '[, step]'})", FIX, key=where)
    return _param({"kind": name, "low": numbers[0], "high": numbers[1],
                   "step": numbers[2] if len(numbers) == 3 else None}, where)


def _param(data: Any, where: str) -> Param:
    try:
        return validate(Param, data, f"params.{where}")
    except SpecError as exc:
        problem = exc.problem.replace(f"invalid params.{where}", f"invalid param {where}", 1)
        problem = problem.split(" (got {")[0]  # the parsed table: noise beside the text
        raise SpecError(problem, "write float(a,b), log(a,b) with a > 0, int(a,b) or "
                        "choice(v1,v2,...) with at least one value", key=where) from None


def parse_param(text: str) -> tuple[str, Param]:
    """``PATH=DIST`` (``train.lr=log(1e-4,1e-2)``) -> ``("train.lr", Param(...))``."""
    path, sep, dist = text.partition("=")
    path = path.strip()
    if not sep or "" in path.split("."):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise SpecError(f"invalid --param '{shown}'",
                        "write PATH=DIST with a dotted spec key, e.g. train.lr=log(1e-4,1e-2)")
    return path, _dist(dist, path)


def parse_params(items: Iterable[str]) -> dict[str, Param]:
    return dict(parse_param(item) for item in items)


def _file_param(path: str, value: Any) -> Param:
    """A sweep file's param: the ``--param`` text (``"log(1e-4,1e-2)"``), a list (a
    choice), or a table (``{kind = "log", low = 1e-4, high = 1e-2}``)."""
    if isinstance(value, str):
        return _dist(value, path)
    if isinstance(value, list):
        value = {"choices": value}
    if isinstance(value, Mapping) and "choices" in value and "kind" not in value:
        value = {"kind": "choice", **value}
    return _param(value, path)


def read_sweep_file(path: str | Path, overrides: Mapping[str, Any] | None = None
                    ) -> SweepSpec:
    """A sweep file (TOML, YAML or JSON), its ``config`` made relative to the file, with
    ``overrides`` (the command line's settings: later wins; ``params`` are added)."""
    data = read_config(path)
    params = data.pop("params", {}) or {}
    if not isinstance(params, Mapping):
        raise SpecError(f"invalid params in {path}: a table of PATH = DIST",
                        "write e.g. params.\"train.lr\" = \"log(1e-4,1e-2)\"", key="params")
    parsed = {str(k): _file_param(str(k), v) for k, v in _flat(params).items()}
    if isinstance(data.get("config"), str) and not Path(data["config"]).is_absolute():
        data["config"] = str(Path(path).parent / data["config"])
    overrides = dict(overrides or {})
    parsed.update(overrides.pop("params", {}))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return validate_sweep({**data, "params": parsed})
    except SpecError as exc:
        problem = exc.problem.replace(f"invalid {exc.key}:", f"invalid {exc.key} in {path}:", 1)
        raise SpecError(problem, exc.fix, key=exc.key) from None


def validate_sweep(data: Mapping[str, Any]) -> SweepSpec:
    """``data`` as a SweepSpec, or a one-line SpecError (without the echo of the whole
    table that a sweep-level check's error would carry)."""
    try:
        return validate(SweepSpec, dict(data))
    except SpecError as exc:
        problem = exc.problem.split(" (got {")[0] if exc.key is None else exc.problem
        raise SpecError(problem, exc.fix, key=exc.key) from None


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables of a TOML/YAML file (``[params.train] lr = ...``) -> dotted paths; a
    table holding ``kind`` or ``choices`` is a distribution, not a level."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and not ({"kind", "choices"} & set(value)):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def space_of(params: Mapping[str, Param]) -> dict[str, str]:
    """The search space as text (stored with the study: a second sweep on it must match)."""
    return {path: param.text() for path, param in sorted(params.items())}


def param_sets(values: Mapping[str, Any]) -> list[str]:
    """A trial's values as ``--set`` overrides (``train.lr=0.001``)."""
    return [f"{path}={json.dumps(value)}" for path, value in values.items()]


def check_space(spec: SweepSpec, check: Callable[[list[str]], Any]) -> None:
    """Call ``check(sets)`` with the overrides of each bound and each choice, so an unknown
    path or a value the spec refuses fails now, not in a trial. ``check`` raises."""
    for path, param in spec.params.items():
        for value in param.values():
            try:
                check(param_sets({path: value}))
            except SpecError as exc:
                raise SpecError(f"param {path}: {exc.problem}", exc.fix, key=path) from None
            except UsageError as exc:  # a component that refuses the value (a shape)
                raise UsageError(f"param {path}={json.dumps(value)}: {exc.problem}",
                                 exc.fix) from None
