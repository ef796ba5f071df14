"""Shared fixtures. Keep this small: test-specific helpers live in their test files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

# Whole plugin projects (with tests of their own, run by the tests that install them).
collect_ignore = ["fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that trains for seconds (CI still runs it)")
    # Tiny in-process models are slower with two intra-op threads than with one, and
    # many times slower when a subprocess test holds the other core.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's AEZOO_DEBUG / AEZOO_STRICT_PLUGINS must not change what tests see."""
    monkeypatch.delenv("AEZOO_DEBUG", raising=False)
    monkeypatch.delenv("AEZOO_STRICT_PLUGINS", raising=False)


@pytest.fixture(autouse=True)
def _ieee_floats_after_each_test() -> Iterator[None]:
    """The trainer flushes denormals to zero (process-wide CPU state, for speed); other
    tests, hypothesis's float strategies among them, expect IEEE floats back."""
    yield
    import torch

    torch.set_flush_denormal(False)


@pytest.fixture
def runner() -> CliRunner:
    """typer's CliRunner; ``result.stderr`` holds stderr, ``result.output`` both streams."""
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Any]:
    """Run ``aezoo ARGS...`` in-process, in a temporary working directory."""
    from aezoo.cli import app

    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, **kwargs: Any) -> Any:
        return runner.invoke(app, list(args), **kwargs)

    return invoke
