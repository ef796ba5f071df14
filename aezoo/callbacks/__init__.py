"""Trainer callbacks. The loop only trains; logging, files and early stopping live here.

The contract (hooks, ``EpochResult``, ``trainer.outcome``) is ``aezoo.training.hooks``;
its ``Callback`` and ``EpochResult`` are re-exported here. aezoo's own callbacks are
entry points of the ``aezoo.callbacks`` group like a plugin's (``metrics``, ``images``,
``early-stopping``, ``checkpoint``), each a factory taking the run directory;
``load_callback`` builds one by name. The trackers (``tensorboard``, ``mlflow``, ``wandb``)
are a first-party plugin, ``aezoo_trackers``.
"""

from aezoo.callbacks.early_stopping import EarlyStopping
from aezoo.callbacks.files import Checkpointer, ImageWriter, MetricsWriter
from aezoo.callbacks.loading import CALLBACK_GROUP, load_callback
from aezoo.training.hooks import Callback, EpochResult

__all__ = ["CALLBACK_GROUP", "Callback", "Checkpointer", "EarlyStopping", "EpochResult",
           "ImageWriter", "MetricsWriter", "load_callback"]
