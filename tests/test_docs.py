"""The docs stay in step with the code: every spec key is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from aezoo.specs import ComponentSpec, DataSpec, ModelSpec, TrainSpec

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("model", [ModelSpec, ComponentSpec, TrainSpec, DataSpec])
def test_every_spec_key_is_in_the_spec_reference(model):
    text = (DOCS / "specs.md").read_text()
    missing = [key for key in model.model_fields if f"| `{key}` |" not in text]
    assert not missing, f"docs/specs.md lacks {model.__name__} keys: {missing}"


def test_readme_links_resolve():
    readme = (DOCS.parent / "README.md").read_text()
    import re

    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (DOCS.parent / target).exists(), target
