"""Conformance checks of descriptors and their params models (no model is built here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aezoo import registry
from aezoo.errors import AezooError

if TYPE_CHECKING:
    from pydantic import BaseModel

_PROBE_KEY = "__aezoo_conformance_probe__"
_WRONG_VALUES: tuple[Any, ...] = ({_PROBE_KEY: [1, 2]}, _PROBE_KEY)


# --- discovery helpers for parametrised tests --------------------------------------


def variant_names(dist: str | None = None) -> list[str]:
    """Variant names (qualified ``DIST:NAME``), optionally only those ``dist`` provides."""
    return component_names("variant", dist)


def component_names(kind: str, dist: str | None = None) -> list[str]:
    """``encoder``/``decoder``/``loss`` names (``DIST:NAME``), optionally of one ``dist``."""
    return [e.qualified for e in registry.entries(kind)
            if dist is None or registry.canonical(e.dist) == registry.canonical(dist)]


# --- descriptors and params ---------------------------------------------------------


def check_descriptor(kind: str, name: str, *, torch_free: bool = True) -> Any:
    """``name`` loads as a valid ``kind`` descriptor; returns it.

    With ``torch_free``, also ``check_torch_free([(kind, name)])``.
    """
    try:
        obj = registry.load(kind, name)
    except AezooError as exc:
        raise AssertionError(str(exc)) from None
    if torch_free:
        check_torch_free([(kind, name)])
    return obj


def check_torch_free(refs: Iterable[tuple[str, str]]) -> None:
    """A fresh interpreter loads each ``(kind, name)`` descriptor without importing torch.

    Descriptor modules are what ``aezoo list`` and ``aezoo info`` import: torch belongs
    inside the build functions.
    """
    refs = list(refs)
    code = ("import sys; from aezoo import registry\n"
            f"for kind, name in {refs!r}:\n"
            "    registry.load(kind, name)\n"
            "    if 'torch' in sys.modules:\n"
            "        print(kind, name); break\n")
    # The child sees what this interpreter sees (a test may have extended sys.path).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    if run.returncode != 0:
        detail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssertionError(f"loading {refs} in a fresh interpreter failed: {detail}")
    if run.stdout.strip():
        kind, name = run.stdout.split()[:2]
        raise AssertionError(
            f"importing the module behind {kind} '{name}' imports torch; import torch "
            "inside the build function so `aezoo list` stays fast")


def check_params_model(params: type[BaseModel], values: Mapping[str, Any] | None = None, *,
                       bad: Iterable[Mapping[str, Any]] = (),
                       unchecked_fields: Iterable[str] = ()) -> None:
    """A component's params model validates ``values`` (default: its defaults), survives
    a JSON round trip, and rejects unknown keys, wrongly typed values and each ``bad``.

    ``unchecked_fields``: fields that legitimately accept any value (e.g. ``Any``).
    """
    from pydantic import BaseModel, ValidationError

    label = params.__name__
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise AssertionError(f"{params!r} is not a pydantic model class")
    values = dict(values or {})
    try:
        good = params.model_validate(values)
    except ValidationError as exc:
        what = "its defaults" if not values else f"the values {values}"
        raise AssertionError(f"{label} rejects {what}: {_first_error(exc)}") from None
    dumped = good.model_dump(mode="json")
    try:
        again = params.model_validate(json.loads(json.dumps(dumped)))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label} does not survive a JSON round trip ({exc}); specs "
                             "store params as JSON, so use JSON-compatible types") from None
    if again != good:
        raise AssertionError(f"{label} changes in a JSON round trip: {good!r} -> {again!r}")

    def rejects(data: Mapping[str, Any]) -> bool:
        try:
            params.model_validate(data)
        except ValidationError:
            return True
        except Exception as exc:  # a validator that crashes instead of rejecting
            raise AssertionError(f"{label} raised {type(exc).__name__} for {dict(data)!r} "
                                 f"instead of a ValidationError: {exc}") from None
        return False

    if not rejects({**dumped, _PROBE_KEY: 1}):
        raise AssertionError(f"{label} accepts unknown keys; set "
                             "model_config = ConfigDict(extra='forbid') so typos are errors")
    skip = set(unchecked_fields)
    for field in params.model_fields:
        if field in skip:
            continue
        if not any(rejects({**dumped, field: wrong}) for wrong in _WRONG_VALUES):
            raise AssertionError(
                f"{label}.{field} accepts any value (tried {list(_WRONG_VALUES)!r}); give it "
                "a precise type, or list it in unchecked_fields")
    for example in bad:
        if not rejects({**dumped, **example}):
            raise AssertionError(f"{label} accepts the bad value {dict(example)!r}")
    try:
        params.model_json_schema()
    except Exception as exc:
        raise AssertionError(f"{label} has no JSON schema ({type(exc).__name__}: {exc}); "
                             "`aezoo schema` and `aezoo info --json` need one") from None


def _first_error(exc: Any) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])


