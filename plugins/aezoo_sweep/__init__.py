"""aezoo's hyperparameter sweeps (``aezoo sweep``), a first-party plugin registered through
the ``aezoo.commands`` entry point only. Optuna searches, prunes and stores; ``spec`` is the
search space as a value (no Optuna), ``study`` runs a study's trials as ordinary run
directories, ``show`` reports a sweep, ``cli`` is the command (torch-free at import).
"""
