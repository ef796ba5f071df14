"""A trained model as a folder anyone can read: what ``aezoo push`` uploads (or writes
with ``--to DIR``) and what a plugin ships as a packaged weight set.

The folder: ``model.safetensors`` (the spec in its header, as every aezoo model),
``config.json`` (the weight-set card: variant, dataset, recipe, metrics, SHA-256,
licence), ``recipe.json`` (the run spec, for ``aezoo train --config``), ``README.md`` (a
Hub model card: YAML metadata, metrics, pictures, how to load and reproduce) and
``images/`` (the run's curves, reconstructions of the first test images).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aezoo.data.download import sha256_of
from aezoo.errors import OutputExistsError, UsageError, WriteError
from aezoo.fileio import finite_or_null, fsync_dir
from aezoo.pretrained import Located, locate
from aezoo.rundir import CURVES_FILE, IMAGES_DIR, RUN_FILE, read_run_spec
from aezoo.weightset import CARD_FILE, TAG_PATTERN, WEIGHTS_FILE, WeightSet

RECIPE_FILE = "recipe.json"
README_FILE = "README.md"
RECON_FILE = "reconstructions.png"
# Machine-dependent or path-like values of `aezoo eval --json`, not properties of weights.
_NOT_METRICS = ("model", "device", "images_per_s", "notes")


@dataclass(frozen=True)
class Shared:
    folder: Path
    card: WeightSet
    files: tuple[str, ...]


def describe(target: str, tag: str, license: str = "mit", description: str = "",
             device: str = "cpu") -> tuple[Located, WeightSet, Any]:
    """The card of the model ``target`` names (a run directory, or a file in one): its
    recipe from run.json, its metrics measured now as ``aezoo eval --json`` does."""
    import re

    from aezoo.evaluation import evaluate, load_split

    if not re.fullmatch(TAG_PATTERN, tag):
        raise UsageError(f"--tag '{tag[:60]}' is not a tag",
                         "use lower-case letters, digits, '-' and '_' (e.g. mnist5k)")
    located = locate(target)
    run_dir = located.path.parent
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{located.path} has no {RUN_FILE} beside it: its recipe is unknown",
                         "push the directory of the training run that made it")
    spec = read_run_spec(run_dir)
    loaded = load_split(str(located.path), None, None, None, device)
    result = evaluate(loaded.model, loaded.images, 1024, loaded.memory_format)
    metrics = {"data": loaded.data_name, "split": loaded.split,
               **{k: v for k, v in result.as_dict().items() if k not in _NOT_METRICS}}
    card = WeightSet(
        variant=spec.model.variant or spec.model.encoder.name, tag=tag, file=WEIGHTS_FILE,
        sha256=sha256_of(located.path), size=located.path.stat().st_size,
        dataset=spec.data.name, recipe=spec.model_dump(mode="json"),
        metrics=finite_or_null(metrics), license=license,
        description=description or f"{spec.model.variant or 'a custom model'} trained on "
        f"{spec.data.name} with aezoo", init=spec.train.init)
    return located, card, loaded


def write_folder(target: str, out: Path, tag: str, *, license: str = "mit",
                 description: str = "", force: bool = False, pictures: bool = True,
                 device: str = "cpu", repo: str | None = None) -> Shared:
    """Write the shareable folder of ``target`` to ``out``, whole or not at all: it is
    built beside ``out`` and renamed into place (an existing ``out`` only with ``force``,
    and replaced only once the new folder is complete)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file", "give a directory for --to")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} already exists and is not empty",
                                "choose another --to, or pass --force")
    located, card, loaded = describe(target, tag, license, description, device)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
        build.chmod(0o755)  # mkdtemp's 0o700 would follow the folder into place
    except OSError as exc:
        raise WriteError(f"cannot write into {parent} ({exc.strerror or exc})",
                         "choose a writable --to") from None
    try:
        files = _fill(build, located, card, loaded, pictures, repo)
        old = None
        if out.exists():
            old = parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        build.rename(out)
        fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise WriteError(f"cannot write {out} ({exc.strerror or exc})",
                         "free some space or choose another --to; nothing was replaced") \
            from None
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return Shared(out, card, files)


def _fill(folder: Path, located: Located, card: WeightSet, loaded: Any,
          pictures: bool, repo: str | None) -> tuple[str, ...]:
    shutil.copyfile(located.path, folder / WEIGHTS_FILE)
    (folder / CARD_FILE).write_text(json.dumps(config_json(card), indent=2) + "\n")
    (folder / RECIPE_FILE).write_text(json.dumps(card.recipe, indent=2) + "\n")
    shown: list[str] = []
    if pictures:
        (folder / IMAGES_DIR).mkdir()
        curves = located.path.parent / IMAGES_DIR / CURVES_FILE
        if curves.is_file():
            shutil.copyfile(curves, folder / IMAGES_DIR / CURVES_FILE)
            shown.append(f"{IMAGES_DIR}/{CURVES_FILE}")
        _reconstructions(folder / IMAGES_DIR / RECON_FILE, loaded)
        shown.append(f"{IMAGES_DIR}/{RECON_FILE}")
    (folder / README_FILE).write_text(model_card(card, shown, repo))
    return tuple(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))


def _reconstructions(path: Path, loaded: Any) -> None:
    from aezoo.viz import banded, default_scale, reconstruct, write_png

    images = loaded.images[:10]
    recon = reconstruct(loaded.model, images, loaded.memory_format)
    write_png(path, banded(images, recon, scale=default_scale(*images.shape[-2:])))


def config_json(card: WeightSet) -> dict[str, Any]:
    """``config.json``: a few top-level keys the Hub and people read, the card under
    ``aezoo`` (what ``aezoo.weightset.read_card`` reads back)."""
    return {"library_name": "aezoo", "model_type": card.variant, "name": card.name,
            "aezoo": card.model_dump(mode="json", exclude={"default"})}


def _hub_metrics(card: WeightSet) -> list[dict[str, Any]]:
    return [{"type": key, "name": key.upper() if key != "psnr" else "PSNR (dB)",
             "value": value} for key, value in card.metrics.items()
            if key in ("mse", "bce", "psnr", "ssim", "loss") and value is not None]


def model_card(card: WeightSet, pictures: list[str], repo: str | None = None) -> str:
    """README.md: the Hub's YAML metadata, then what a person needs to use and trust it.
    ``repo``: where it is pushed (``hf://ORG/REPO``), quoted in the examples."""
    import yaml

    where = repo or "hf://ORG/REPO"
    split = card.metrics.get("split", "test")
    meta = {
        "library_name": "aezoo", "license": card.license,
        "tags": ["aezoo", "autoencoder", "convolutional-autoencoder", "image-reconstruction",
                 card.variant],
        "model-index": [{"name": card.name, "results": [{
            "task": {"type": "image-to-image", "name": "Image reconstruction"},
            "dataset": {"name": card.dataset, "type": card.dataset, "split": split},
            "metrics": _hub_metrics(card)}]}],
    }
    if card.dataset.startswith("hf:"):
        meta["datasets"] = [card.dataset[3:]]
    rows = "\n".join(f"| {key} | {value if not isinstance(value, float) else f'{value:.6g}'} |"
                     for key, value in card.metrics.items() if not isinstance(value, dict))
    images = "\n".join(f"![{Path(p).stem}]({p})" for p in pictures)
    init = f"\nFine-tuned from `{card.init}`.\n" if card.init else ""
    return f"""---
{yaml.safe_dump(meta, sort_keys=False).strip()}
---

# {card.name}

{card.description}

An aezoo model (`pip install aezoo`): variant `{card.variant}`, trained on
`{card.dataset}`. The weights are `{WEIGHTS_FILE}` (SHA-256 `{card.sha256}`); the model's
spec travels in its header, so it loads with no code from this repository and no pickle.
{init}
## Metrics

`aezoo eval --json` on {card.metrics.get("data", card.dataset)}/{split}:

| metric | value |
|---|---|
{rows}

{images}

## Use

```python
import aezoo

model = aezoo.load("{where}")  # or a local copy of this folder's model.safetensors
codes = model.encode(images)          # uint8 or float images, NCHW
```

```bash
pip install 'aezoo[hub]'
aezoo eval {where}
aezoo train {card.variant} --init {where} --data YOUR-DATA   # fine-tune
```

## Reproduce

`{RECIPE_FILE}` is the complete run spec that trained these weights:

```bash
aezoo train --config {RECIPE_FILE} --out runs/{card.name}
```

Licence: {card.license}.
"""
