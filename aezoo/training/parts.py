"""aezoo's own optimisers and schedules, registered in ``pyproject.toml`` under
``aezoo.optimizers`` and ``aezoo.schedules`` exactly as a plugin's would be.

Descriptors only (torch-free): the builders are ``"module:function"`` references into
``aezoo.training.optim``. Their hyperparameters are the train spec's own (``lr``,
``betas``, ``eps``, ``weight_decay``, ``momentum``, ``warmup``, ``min_lr``, ``step_size``,
``gamma``), so none of them has ``optimizer_params`` / ``scheduler_params``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from aezoo.protocols import OptimizerComponent, ScheduleComponent


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


OPTIM = "aezoo.training.optim"

adam = OptimizerComponent(NoParams, f"{OPTIM}:build_adam",
                          "Adam (lr, betas, eps, weight_decay from the train spec)")
adamw = OptimizerComponent(NoParams, f"{OPTIM}:build_adamw",
                           "AdamW: Adam with decoupled weight decay")
sgd = OptimizerComponent(NoParams, f"{OPTIM}:build_sgd",
                         "SGD with momentum (lr, momentum, weight_decay)")

none = ScheduleComponent(NoParams, f"{OPTIM}:build_none",
                         "constant lr (after the linear warm-up, if any)")
cosine = ScheduleComponent(NoParams, f"{OPTIM}:build_cosine",
                           "cosine decay from lr to min_lr over the run, after the warm-up")
step = ScheduleComponent(NoParams, f"{OPTIM}:build_step",
                         "lr * gamma ** (epoch // step_size), after the warm-up")
onecycle = ScheduleComponent(NoParams, f"{OPTIM}:build_onecycle",
                             "cosine rise from lr/25 to lr over warmup steps (default 30% of "
                             "the run), then cosine decay to lr/25e4")
