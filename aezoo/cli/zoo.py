"""Trained models by name: ``aezoo list --pretrained``, ``aezoo info VARIANT.TAG``,
``aezoo push`` and ``aezoo pull`` (docs/pretrained.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from aezoo.cli import tables
from aezoo.cli.common import console, say, warn_unavailable
from aezoo.cli.tables import ID, NUMBER

_SHOWN_METRICS = ("bce", "mse", "psnr", "ssim")


def list_pretrained(pattern: str | None, as_json: bool) -> None:
    """The table of ``aezoo list --pretrained``."""
    from aezoo.pretrained import list_weight_sets

    sets = list_weight_sets(pattern)
    if as_json:
        console.print_json(data=[{"name": w.name, **w.model_dump(mode="json")} for w in sets])
    else:
        columns = [("name", ID), ("dataset", ID), *((m, NUMBER) for m in _SHOWN_METRICS),
                   ("size", NUMBER), ("default", ID), ("where", ID)]
        table = tables.table(columns, title="aezoo weight sets", title_justify="left")
        for w in sets:
            values = [w.metrics.get(m) for m in _SHOWN_METRICS]
            cells = [w.name, w.dataset, *("n/a" if v is None else f"{v:.4f}" for v in values),
                     "?" if w.size is None else f"{w.size / 1024:,.1f} KiB",
                     "yes" if w.default else "",
                     "in its plugin" if w.file.startswith("package:") else w.file]
            table.add_row(*(escape(c) for c in cells))
        tables.show(table, console)
        if not sets:
            console.print(f"no weight set matches '{pattern}'" if pattern
                          else "no weight sets installed")
    warn_unavailable("weights")


def weight_info(name: str, as_json: bool) -> None:
    """``aezoo info VARIANT.TAG``: the card of a weight set."""
    from aezoo.pretrained import weight_set
    from aezoo.sharing import RECIPE_FILE

    w = weight_set(name)
    if as_json:
        console.print_json(data={"name": w.name, **w.model_dump(mode="json")})
        return
    console.print(f"[bold]{escape(w.name)}[/]: {escape(w.description)}")
    facts = tables.table([("", ID), ("", ID)], show_header=False)
    for label, value in (("variant", w.variant), ("dataset", w.dataset),
                         ("file", w.file), ("sha256", w.sha256),
                         ("size", "?" if w.size is None else f"{w.size:,} bytes"),
                         ("licence", w.license), ("default tag", "yes" if w.default else "no"),
                         *((("fine-tuned from", w.init),) if w.init else ())):
        facts.add_row(label, escape(str(value)))
    tables.show(facts, console)
    console.print(f"metrics (aezoo eval on {w.metrics.get('data', w.dataset)}/"
                  f"{w.metrics.get('split', '?')}):", highlight=False)
    metrics = tables.table([("metric", ID), ("value", NUMBER)])
    for key, value in w.metrics.items():
        if key in ("data", "split") or isinstance(value, dict):
            continue
        metrics.add_row(key, "n/a" if value is None else
                        f"{value:,}" if isinstance(value, int) else f"{value:.6g}")
    tables.show(metrics, console)
    say(f"load: aezoo.load(\"{w.name}\")  |  fine-tune: aezoo train {w.variant} "
        f"--init {w.name} --data DATA")
    say(f"reproduce: save the recipe with `aezoo info {w.name} --json`'s \"recipe\" "
        f"as {RECIPE_FILE}, then `aezoo train --config {RECIPE_FILE}`")


def push_command(
    run: str = typer.Argument(..., metavar="RUN", help="A run directory (or its model file)."),
    repo: str | None = typer.Argument(None, metavar="hf://USER/REPO",
                                      help="The Hub repo to upload to (created if needed)."),
    to: Path | None = typer.Option(None, "--to", metavar="DIR",
                                   help="Write the folder here instead of uploading it."),
    revision: str | None = typer.Option(None, metavar="BRANCH",
                                        help="Upload to this branch (created if needed) "
                                        "[default: main]."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    tag: str = typer.Option("custom", metavar="TAG", help="The weight set's tag (its name is "
                            "VARIANT.TAG)."),
    license: str = typer.Option("mit", metavar="ID", help="Licence of the weights (an SPDX "
                                "id, as the Hub's metadata takes)."),
    description: str = typer.Option("", metavar="TEXT", help="One line about the model."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --to folder."),
) -> None:
    """Share a trained model: model.safetensors, config.json (the weight-set card),
    recipe.json, a README.md model card (Hub metadata, metrics, pictures, how to load and
    reproduce) and images/. To the Hub with `pip install 'aezoo[hub]'` and HF_TOKEN;
    `--to DIR` writes the same folder locally (for another host, or to review it)."""
    import tempfile

    from aezoo.errors import UsageError
    from aezoo.sharing import write_folder

    if (repo is None) == (to is None):
        raise UsageError("give either hf://USER/REPO or --to DIR",
                         "aezoo push RUN hf://USER/REPO, or aezoo push RUN --to DIR")
    if to is not None:
        shared = write_folder(run, to, tag, license=license, description=description,
                              force=force)
        say(f"wrote {shared.folder}: {', '.join(shared.files)}")
        return
    from aezoo import hub

    assert repo is not None
    ref = hub.parse(repo if revision is None else f"{repo.partition('@')[0]}@{revision}")
    with tempfile.TemporaryDirectory(prefix="aezoo-push-") as tmp:
        shared = write_folder(run, Path(tmp) / "model", tag, license=license,
                              description=description, repo=str(ref))
        url = hub.push(shared.folder, ref, private=private,
                       message=f"aezoo push: {shared.card.name}")
    say(f"pushed {len(shared.files)} files to {ref} ({url})")


def pull_command(
    repo: str = typer.Argument(..., metavar="hf://ORG/REPO[@REV]",
                               help="The Hub repo (a branch, tag or commit after @)."),
) -> None:
    """Download a model from the Hub into the Hub's cache (HF_HOME), so it loads offline
    afterwards, and check that it loads; prints where it is."""
    from aezoo import hub
    from aezoo.checkpoint import load
    from aezoo.pretrained import locate

    ref = hub.parse(repo)
    located = locate(str(ref))
    model = load(located.path)
    card = located.weight_set
    what = f"{card.name} ({card.description})" if card else (model.spec.variant or "a model")
    say(f"pulled {ref}: {what}; {model.num_parameters():,} parameters, at {located.path}")


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)
    app.command("pull")(pull_command)
