"""aezoo's first-party experiment trackers: ``--callback mlflow``, ``wandb`` and
``tensorboard``, each needing the aezoo extra of its name. Registered through the
``aezoo.callbacks`` entry points only (see aezoo's pyproject.toml), like a third party's
plugin; ``tracking`` is what the MLflow and W&B callbacks share."""
