"""Run specs as text: TOML, YAML or JSON, read (``read_config``, ``parse``) and written
(``render``, ``to_toml``). One parser per format, chosen here and nowhere else."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aezoo.errors import UsageError, summary
from aezoo.fileio import MAX_SPEC_BYTES, read_bounded

__all__ = ["FORMATS", "SCHEMA_KEY", "SUFFIXES", "loads", "parse", "read_config", "render",
           "syntax_error", "to_toml"]

FORMATS = ("toml", "yaml", "json")
# File suffix -> format.
SUFFIXES = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# A top-level key spec files may hold for editors (JSON Schema's own); ignored when read.
SCHEMA_KEY = "$schema"


def loads(text: str, fmt: str) -> Any:
    """``text`` parsed as ``fmt`` (``toml``, ``yaml`` or ``json``); each parser raises its
    own error types."""
    if fmt == "json":
        return json.loads(text)
    if fmt == "toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    import yaml

    return yaml.safe_load(text)


def parse(text: str, fmt: str) -> dict[str, Any]:
    """The inverse of ``render``."""
    return dict(loads(text, fmt))


def read_config(path: str | Path) -> dict[str, Any]:
    """A spec file: TOML, YAML or JSON by its suffix."""
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO would block forever
        raise UsageError(f"config file {path} is not a regular file",
                         "give a .toml, .yaml/.yml or .json file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"config file {path} has an unknown type",
                         "use a .toml, .yaml/.yml or .json file")
    try:  # bounded: an 18 MB config of a million keys once took 29 s and 1.4 GB
        text = read_bounded(path, MAX_SPEC_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read config file {path} ({reason})", "check the path") from None
    try:
        data = loads(text, SUFFIXES[suffix])
    except Exception as exc:  # each parser raises its own error types
        raise UsageError(f"config file {path} is not valid {suffix[1:].upper()}: "
                         f"{syntax_error(exc)}", "fix the syntax") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} does not hold a table/mapping",
                         "write keys model, train and data at the top level")
    # An editor's pointer to the JSON Schema (`aezoo schema`), not a setting.
    if isinstance(data.get(SCHEMA_KEY), str):
        del data[SCHEMA_KEY]
    return data


def syntax_error(exc: BaseException) -> str:
    """A parser's error in one line, with its line and column where the parser knows them
    (JSON and TOML say them in their first line; YAML's come from its marks)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:  # yaml.MarkedYAMLError
        return f"{' '.join(str(problem).split())} (line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    return summary(exc, with_type=False)


def render(data: Mapping[str, Any], fmt: str, comment: str = "") -> str:
    """``data`` as TOML, YAML or JSON text (JSON has no comments)."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    if fmt == "toml":
        return header + to_toml(data)
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def short_lists(dumper: yaml.SafeDumper, value: list[Any]) -> Any:
        # [16, 8, 8] on one line; nested structures in block style.
        flow = all(not isinstance(v, (list, dict)) for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    Dumper.add_representer(list, short_lists)
    return header + yaml.dump(dict(data), Dumper=Dumper, sort_keys=False,
                              default_flow_style=False, allow_unicode=True, width=100)


# --- a small TOML writer (tomllib reads, nothing in the stdlib writes) ---------------


def to_toml(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document. TOML has no null: a None value is written as a comment
    (``# patience = null  (unset)``), so the file still shows the key; a None inside an
    array is a ValueError."""
    lines: list[str] = []
    _toml_table(lines, data, ())
    return "\n".join(lines).strip("\n") + "\n"


def _toml_table(lines: list[str], table: Mapping[str, Any], path: tuple[str, ...]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines += ["", f"[{'.'.join(_toml_key(p) for p in path)}]"]
    lines += [f"# {_toml_key(k)} = null  (unset)" if v is None
              else f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars]
    for key, sub in tables:
        _toml_table(lines, sub, (*path, str(key)))


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)  # $ would allow "k\n"


def _toml_string(text: str) -> str:
    # JSON's escapes are a subset of TOML basic strings'; TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                          if v is not None)
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, (list, tuple)):
        if any(v is None for v in value):
            raise ValueError("TOML arrays cannot hold null values")
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        raise ValueError("TOML has no null value")
    raise ValueError(f"cannot write a {type(value).__name__} to TOML")
