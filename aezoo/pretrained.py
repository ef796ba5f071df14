"""One resolver for everything that names a model: a file, a run directory, a weight set
``VARIANT.TAG`` (the ``aezoo.weights`` entry points) or ``hf://ORG/REPO[@REV]``.

``locate`` turns any of them into a local safetensors file (downloading and verifying a
weight set's file first), plus the dataset the weights were trained on where known.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aezoo import hub, registry
from aezoo.data.download import download_file, verify
from aezoo.data.source import RemoteFile
from aezoo.errors import AezooError, CheckpointError, UnknownNameError, UsageError
from aezoo.fileio import read_bounded
from aezoo.rundir import model_path
from aezoo.weightset import CARD_FILE, MAX_CARD_BYTES, WeightSet, read_card, split_name

KIND = "weights"
MODEL_HELP = ("A model file, a run directory (its model.safetensors, else last.safetensors), "
              "a weight set VARIANT.TAG (aezoo list --pretrained) or hf://ORG/REPO[@REV].")


@dataclass(frozen=True)
class Located:
    """A model reference made local: the safetensors file and what is known about it."""

    path: Path
    source: str  # what the user gave, as it is recorded (run.json's train.init, cards)
    weight_set: WeightSet | None = None  # a declared weight set, or a pulled repo's card
    dataset: str | None = None  # the data the weights were trained on, where known


def list_weight_sets(pattern: str | None = None) -> list[WeightSet]:
    """Installed weight sets (broken entries are skipped and reported by the registry),
    by name, filtered by an fnmatch pattern over ``VARIANT.TAG``."""
    found = [obj for _, obj in registry.load_all(KIND)]
    return sorted((w for w in found if pattern is None or fnmatch.fnmatchcase(w.name, pattern)),
                  key=lambda w: w.name)


def weight_set(name: str) -> WeightSet:
    """The weight set ``VARIANT.TAG`` (or ``DIST:VARIANT.TAG``); its name must match its
    entry point's."""
    try:
        found: WeightSet = registry.load(KIND, name)
    except UnknownNameError as exc:
        raise UnknownNameError(exc.problem.replace(f"{KIND} '", "weight set '", 1),
                               exc.fix) from None
    if found.name != name.rpartition(":")[2]:
        raise UnknownNameError(f"weight set '{name}' declares itself as '{found.name}'",
                               "report it to the plugin's authors")
    return found


def default_tag(variant: str) -> WeightSet:
    """The weight set ``aezoo.build(variant, pretrained=True)`` loads: the one marked
    default, else the only one."""
    sets = [w for w in list_weight_sets() if w.variant == variant]
    chosen = [w for w in sets if w.default] or (sets if len(sets) == 1 else [])
    if len(chosen) == 1:
        return chosen[0]
    if not sets:
        raise UnknownNameError(f"no pretrained weights for '{variant}' are installed",
                               "see `aezoo list --pretrained` for what is")
    raise UsageError(f"'{variant}' has {len(sets)} weight sets and none is its default",
                     "name one: " + ", ".join(w.name for w in sets))


def cache_dir() -> Path:
    """Where ``https://`` weight sets are kept: ``$AEZOO_CACHE`` or ``~/.cache/aezoo``."""
    base = os.environ.get("AEZOO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "aezoo")
    return Path(base) / "weights"


def weights_file(ws: WeightSet) -> Path:
    """The local, verified file of ``ws`` (downloaded first where it is remote)."""
    expected = RemoteFile(f"{ws.name}.safetensors", ws.sha256, ws.size)
    if ws.file.startswith("package:"):
        module, _, inner = ws.file[len("package:"):].partition("/")
        path = Path(str(resources.files(module).joinpath(inner)))
    elif hub.is_hub_ref(ws.file):
        path = hub.pull(hub.parse(ws.file))
    else:  # a URL: kept under its SHA-256, so two weight sets never share a file
        name = ws.file.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", name):
            name = "model.safetensors"
        expected = RemoteFile(name, ws.sha256, ws.size)
        directory = cache_dir() / ws.sha256
        path = directory / name
        if not path.exists():
            path = download_file(expected, ws.file, directory)
    problem = verify(path, expected) if path.exists() else "missing"
    if problem is not None:
        raise CheckpointError(f"the file of weight set {ws.name} ({path}) is not the one it "
                              f"declares: {problem}",
                              "reinstall its plugin, or delete the file to download it again")
    return path


def locate(target: str | os.PathLike[str]) -> Located:
    """A local model file for ``target``: an existing path wins over a name."""
    text = os.fspath(target)
    if hub.is_hub_ref(text):
        ref = hub.parse(text)
        path = hub.pull(ref)
        card = _card_or_none(path)  # another library's config.json is not ours to judge
        return Located(path, str(ref), card, card.dataset if card else None)
    path = Path(text)
    if path.exists():
        try:
            found = model_path(path)
        except CheckpointError as exc:  # a directory without a model: the wrong directory
            raise UsageError(exc.problem, exc.fix) from None
        card = _card_or_none(found)  # a shared folder (aezoo push --to) names its data
        return Located(found, text, card, card.dataset if card else None)
    if names_weight_set(text):
        ws = weight_set(text)
        return Located(weights_file(ws), ws.name, ws, ws.dataset)
    raise UsageError(f"model file {text[:300]} does not exist",
                     "give a model file, a run directory, a weight set VARIANT.TAG "
                     "(aezoo list --pretrained) or hf://ORG/REPO")


def names_weight_set(text: str) -> bool:
    """Whether ``text`` (not an existing path) is meant as ``VARIANT.TAG``: a weight set
    that is installed, or a tag of an installed variant (then "unknown weight set")."""
    bare = text.rpartition(":")[2]
    parts = split_name(bare)
    if parts is None or parts[1] == "safetensors" or "/" in text or os.sep in text:
        return False
    return bare in registry.names(KIND) or parts[0] in registry.names("variant")


def is_reference(text: str) -> bool:
    """Whether ``text`` names a model by reference (``hf://``, ``VARIANT.TAG``) rather
    than by a path."""
    return hub.is_hub_ref(text) or (not Path(text).exists() and names_weight_set(text))


def _card_or_none(path: Path) -> WeightSet | None:
    """The card beside ``path``, or None when there is none, it cannot be read (a FIFO, a
    device, a card bigger than any card) or it is not aezoo's."""
    card = path.parent / CARD_FILE
    if not card.exists():
        return None
    try:
        return read_card(read_bounded(card, MAX_CARD_BYTES), str(card))
    except (OSError, AezooError):
        return None
