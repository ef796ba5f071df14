"""Every Python and shell example in README.md and docs/*.md runs as written.

Each fenced block tagged ``python``, ``bash``, ``sh``, ``shell`` or ``console`` is one test,
named ``FILE:LINE`` (the line of its opening fence). The blocks of one file run in order,
in one temporary working directory shared by that file (so ``aezoo eval runs/tutorial``
finds what an earlier block trained), as subprocesses: this venv's ``python`` and
``aezoo`` first on PATH, ``AEZOO_DATA`` pointing at an empty cache, ``AEZOO_OFFLINE=1``
and an unreachable proxy (no network), ``COLUMNS=100``.

- ``console`` blocks: the lines after a ``$ `` prompt are the commands (a trailing ``\\``
  continues one), every other line is sample output. A block without a prompt, and a
  block of any other language (``text``, ``toml``, none), is not a command: not run.
- ``bash`` / ``sh`` / ``shell`` blocks without prompts are one script each.
- ``python`` blocks run as a script (``python FILE``) in the file's directory.
- ``<!-- docs-test: skip (REASON) -->`` on the line directly above a fence skips that block
  with REASON (a GPU, a download, an install, a human at the keyboard). A block without
  one must run.
- ``<!-- docs-test: needs MODULE -->`` above a block that needs an extra's library runs it
  where MODULE imports and skips it, with the import error, where it does not.
- ``<!-- docs-test: file NAME -->`` above a block (e.g. a ``toml`` spec file that a later
  command reads) writes its text to NAME in the file's directory, as a reader would.

Budgets: training must take seconds, and the examples stay as a user types them. The
``aezoo`` first on PATH is a shim that appends ``--epochs 1 --limit 256`` to ``aezoo train``
(later flags win) unless it resumes a run (``--resume``: the run's own settings); training
from a Python block gets the same budget as a last layer of
``aezoo.config.build_run_spec``. For speed, both run in forks of one server process that
has imported torch and aezoo (see the harness below). Nothing in aezoo knows about this.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Variants the docs describe ahead of this branch (written in a parallel branch). While a
# name here is not installed, a command that mentions it, or the run directory such a
# command writes (its --out), may fail; everything else must still pass. Installed names
# are checked as usual, so the list only ever hides what does not exist yet.
# The lead empties it once those variants are merged.
PENDING: set[str] = set()  # names a doc may mention before they land (none now)

SHELLS = {"bash", "sh", "shell"}
RUN_LANGS = {"python", "console", *SHELLS}
BUDGET = ["--epochs", "1", "--limit", "256"]
BLOCK_TIMEOUT = 120  # seconds; a hung example fails instead of hanging the suite

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<lang>[\w+-]*)[^`]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?:skip\s*\((?P<reason>[^)]+)\)"
                    r"|file\s+(?P<file>[\w./-]+)|needs\s+(?P<needs>[\w.]+))\s*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None = None  # the marker's reason
    file: str | None = None  # `docs-test: file NAME`: the block is that file's text
    needs: str | None = None  # `docs-test: needs MODULE`: an extra's library

    @property
    def skipped(self) -> str | None:
        """Why this block does not run here: its skip marker, or a library it needs that
        does not import (e.g. datasets, whose pyarrow needs numpy >= 2)."""
        if self.skip or not self.needs:
            return self.skip
        failure = _import_failure(self.needs)
        return f"needs {self.needs}, which does not import here ({failure})" if failure else None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[tuple[int, str]]:
        """(line, command) of a console block's prompts, continuations joined."""
        out: list[tuple[int, str]] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ "):
                start, command = self.line + 1 + i, lines[i][2:]
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command[:-1] + " " + lines[i].strip()
                out.append((start, command))
            i += 1
        return out

    @property
    def runnable(self) -> bool:
        if self.lang == "python" or self.file:
            return True
        if self.lang == "console":
            return bool(self.commands())
        return self.lang in SHELLS


@functools.cache
def _import_failure(module: str) -> str | None:
    """The last line of the error importing ``module`` (in a subprocess, so this process
    is left as it was), or None when it imports."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT)
    return (proc.stderr.strip().splitlines() or ["failed"])[-1] if proc.returncode else None


def parse(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, with the skip marker directly above it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            text = lines[i].strip()
            if text.startswith("<!--") and "docs-test" in text:
                assert MARKER.match(text), (
                    f"{path.name}:{i + 1}: malformed docs-test marker: write "
                    "<!-- docs-test: skip (REASON) -->, <!-- docs-test: file NAME --> or "
                    "<!-- docs-test: needs MODULE -->")
                assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), (
                    f"{path.name}:{i + 1}: a docs-test marker must be the line directly "
                    "above a fence")
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        marker = MARKER.match(lines[start - 1]) if start else None
        blocks.append(Block(path, start + 1, m["lang"].lower(), "\n".join(body) + "\n",
                            marker["reason"].strip() if marker and marker["reason"] else None,
                            marker["file"] if marker else None,
                            marker["needs"] if marker else None))
        i += 1
    for b in blocks:
        assert b.skip is None or b.lang in RUN_LANGS or b.file, (
            f"{b.where}: a docs-test marker above a ```{b.lang} block, which never runs")
    return blocks


BLOCKS = [b for p in DOC_FILES for b in parse(p) if b.runnable]

# --- the harness: a budget shim for `aezoo`, and a fork server that keeps it fast --------
#
# A fresh `aezoo train` spends 4 s importing torch before a 1 s run, and the docs hold
# dozens of commands. So the `aezoo` on PATH is a client: it adds the budget, then hands
# its argv, working directory, environment and stdin/stdout/stderr to a server process
# that has imported torch and aezoo once; the server forks, and the fork runs
# `aezoo.cli.main()` exactly as the console script does, then reports the exit status.
# Python blocks run the same way (`runpy`, after the budget prelude).

CLIENT = """\
#!{python}
# docs-test shim: `aezoo train` gets a short budget unless it resumes a run; the command
# then runs in a fork of a server that has imported torch and aezoo already.
import json, os, socket, sys
MODE, args = {mode!r}, sys.argv[1:]
if MODE == "aezoo" and args[:1] == ["train"] and not any(
        a == "--resume" or a.startswith("--resume=") for a in args):
    args += {budget!r}
request = json.dumps({{"mode": MODE, "argv": args, "cwd": os.getcwd(),
                      "env": dict(os.environ)}}).encode()
with socket.socket(socket.AF_UNIX) as s:
    s.connect({sock!r})
    socket.send_fds(s, [b"x"], [0, 1, 2])
    s.sendall(len(request).to_bytes(8, "big") + request)
    reply = b""
    while chunk := s.recv(16):
        reply += chunk
if len(reply) != 4:
    sys.exit("docs-test server: the command died without an exit status")
sys.exit(int.from_bytes(reply, "big", signed=True))
"""

SERVER = """\
import json, os, runpy, signal, socket, sys, traceback

import torch, torch._dynamo  # what every command would import: once, here  # noqa
import aezoo, aezoo.cli, aezoo.config, aezoo.run  # noqa


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def budget():
    # Training from Python gets the CLI shim's budget: a last layer of the run spec.
    build = aezoo.config.build_run_spec

    def build_run_spec(variant, layers=(), *rest):
        return build(variant, [*layers, {{"train": {{"epochs": 1}}, "data": {{"limit": 256}}}}],
                     *rest)

    aezoo.config.build_run_spec = build_run_spec


def serve(conn):
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)
    request = json.loads(recv_exact(conn, int.from_bytes(recv_exact(conn, 8), "big")))
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 0
    try:
        if request["mode"] == "aezoo":
            sys.argv = ["aezoo", *request["argv"]]
            aezoo.cli.main()
        else:
            budget()
            sys.argv = list(request["argv"])
            sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    conn.sendall(int(code).to_bytes(4, "big", signed=True))


signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks reap themselves
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(16)
sys.stdout.flush()
open(sys.argv[2], "w").close()  # ready
while True:
    conn, _ = server.accept()
    if os.fork() == 0:
        server.close()
        try:
            serve(conn)
        finally:
            os._exit(0)
    conn.close()
"""


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment every example runs in (and the server its commands run in)."""
    base = tmp_path_factory.mktemp("docs-harness")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "aezoo").exists(), f"no aezoo console script beside {sys.executable}"
    sock = Path(tempfile.mkdtemp(prefix="aezoo-docs-")) / "s"  # short: AF_UNIX path limit
    for mode, path in (("aezoo", bin_dir / "aezoo"), ("python", base / "run-python")):
        path.write_text(CLIENT.format(python=sys.executable, mode=mode, budget=BUDGET,
                                      sock=str(sock)))
        path.chmod(0o755)
    (base / "server.py").write_text(SERVER.format())
    (base / "data").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AEZOO_", "PYTEST_", "COV_")) and k != "PYTHONPATH"}
    env.update({
        "PATH": os.pathsep.join([str(bin_dir), str(venv_bin), env.get("PATH", "")]),
        "VIRTUAL_ENV": str(venv_bin.parent),
        "AEZOO_DATA": str(base / "data"),
        "AEZOO_OFFLINE": "1",
        "COLUMNS": "100",
        "NO_COLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "PIP_NO_INDEX": "1",
        **{k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY",
                                               "HTTPS_PROXY", "all_proxy", "ALL_PROXY")},
    })
    ready = base / "ready"
    with open(base / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, str(base / "server.py"), str(sock),
                                   str(ready)], cwd=base, env=env, stdout=log, stderr=log,
                                  stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert server.poll() is None, (base / "server.log").read_text()
            assert time.monotonic() < deadline, "the docs-test server did not start"
            time.sleep(0.05)
        yield {**env, "_RUN_PYTHON": str(base / "run-python"), "_BASE": str(base)}
    finally:
        server.kill()
        server.wait()
        sock.unlink(missing_ok=True)
        sock.parent.rmdir()


@dataclass
class FileRun:
    """One markdown file's blocks, run in order in one working directory."""

    cwd: Path
    done: int = 0  # blocks of this file run so far
    failed: str | None = None
    pending: set[str] = field(default_factory=set)  # run dirs of pending commands


_RUNS: dict[Path, FileRun] = {}


def _installed() -> set[str]:
    import aezoo

    return set(aezoo.list_variants())


def _pending_names() -> set[str]:
    return PENDING - _installed()


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in env.items() if not k.startswith("_")}
    return subprocess.run(argv, cwd=cwd, env=clean, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT)


def _report(where: str, what: str, proc: subprocess.CompletedProcess[str]) -> str:
    return (f"{where}: exited {proc.returncode}\n{what}\n--- stdout\n"
            f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def _execute(block: Block, state: FileRun, env: dict[str, str]) -> str | None:
    """Run one block in its file's directory; the failure as text, or None."""
    if block.file:
        (state.cwd / block.file).write_text(block.text)
        return None
    if block.lang == "python":
        script = Path(env["_BASE"]) / f"{block.path.stem}_{block.line}.py"
        script.write_text(block.text)
        proc = _run([env["_RUN_PYTHON"], str(script)], state.cwd, env)
        return None if proc.returncode == 0 else _report(block.where, block.text, proc)
    if block.lang in SHELLS and not block.commands():
        proc = _run(["bash", "-eo", "pipefail", "-c", block.text], state.cwd, env)
        return None if proc.returncode == 0 else _report(block.where, block.text, proc)
    pending = _pending_names()
    for line, command in block.commands():
        where = f"{block.path.relative_to(ROOT)}:{line}"
        # Each command starts where the last one ended (`cd` carries over).
        marker = Path(env["_BASE"]) / "pwd"
        proc = _run(["bash", "-eo", "pipefail", "-c",
                     f"{command}\npwd > {shlex.quote(str(marker))}"], state.cwd, env)
        words = set(re.findall(r"[\w./:-]+", command))
        if pending & words or state.pending & words:
            state.pending.update(re.findall(r"--out[ =](\S+)", command))
            if proc.returncode != 0:
                continue  # a variant this branch does not have yet (PENDING)
        if proc.returncode != 0:
            return _report(where, "$ " + command, proc)
        state.cwd = Path(marker.read_text().strip())
    return None


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_docs_example(block: Block, harness: dict[str, str],
                      tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.skipped:
        pytest.skip(block.skipped)
    if block.path not in _RUNS:
        _RUNS[block.path] = FileRun(tmp_path_factory.mktemp(block.path.stem))
    state = _RUNS[block.path]
    blocks = [b for b in BLOCKS if b.path == block.path]
    index = blocks.index(block)
    if state.failed is not None:
        pytest.skip(f"an earlier block of this file failed: {state.failed}")
    # Run the blocks before this one first (when it was selected alone, e.g. with -k).
    while state.done <= index:
        earlier = blocks[state.done]
        state.done += 1
        if earlier.skipped:
            continue
        failure = _execute(earlier, state, harness)
        if failure is not None:
            state.failed = earlier.where
            if earlier is not block:  # selected alone: it cannot run without that one
                failure = f"{block.where} needs the blocks before it; one failed: {failure}"
            pytest.fail(failure, pytrace=False)


def test_markers_are_checked(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("<!-- docs-test: skip (no fence below) -->\n\ntext\n")
    with pytest.raises(AssertionError, match="directly above a fence"):
        parse(doc)
    doc.write_text("<!-- docs-test: skipp (typo) -->\n```console\n$ aezoo list\n```\n")
    with pytest.raises(AssertionError, match="malformed"):
        parse(doc)


def test_a_needs_marker_skips_only_where_the_module_does_not_import(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("<!-- docs-test: needs json -->\n```python\nimport json\n```\n\n"
                   "<!-- docs-test: needs aezoo_no_such_module -->\n```python\nx = 1\n```\n")
    here, missing = parse(doc)
    assert (here.needs, here.skipped) == ("json", None)
    assert missing.skipped is not None and missing.skipped.startswith(
        "needs aezoo_no_such_module, which does not import here (ModuleNotFoundError: ")


def test_the_parser_reads_prompts_continuations_and_markers(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(textwrap.dedent("""\
        <!-- docs-test: skip (needs a GPU) -->
        ```console
        $ aezoo train a --device cuda
        ```

        ```console
        $ aezoo list \\
              --components   # a comment
        output line
        $ aezoo info pool
        ```

        ```console
        only output
        ```

        - item

          ```python
          print(1)
          ```
        """))
    blocks = parse(doc)
    assert [(b.line, b.lang, b.skip) for b in blocks] == [
        (2, "console", "needs a GPU"), (6, "console", None), (13, "console", None),
        (19, "python", None)]
    assert blocks[1].commands() == [(7, "aezoo list  --components   # a comment"),
                                    (10, "aezoo info pool")]
    assert not blocks[2].runnable
    assert blocks[3].text == "print(1)\n"
