"""The resume file's info as pydantic models: what ``state.load_state`` accepts (bool is no
number here, NaN no value), and a validation error as the corrupt-state message's detail."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic_core import ErrorDetails

from aezoo.epochs import COLUMNS, finite
from aezoo.specs import short_repr

# -- the info, as a resume uses it (bool is no number here, NaN no value) ---------------
Whole = Annotated[int, Strict()]
Count = Annotated[int, Strict(), Field(ge=0)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


def _scalar(value: Any) -> Any:
    """A per-parameter optimiser value as JSON holds it: a number, a flag or null."""
    if not (value is None or isinstance(value, bool) or finite(value)):
        raise ValueError("a number")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class OptimizerInfo(_Frozen):
    """``optimizer.state_dict()`` less its tensors (:func:`flatten_optimizer`); the groups
    are checked against the trainer's own optimiser (:func:`check_fit`)."""

    param_groups: list[dict[str, Any]]
    scalars: dict[str, dict[str, Annotated[Any, AfterValidator(_scalar)]]] = {}


class EpochRow(_Frozen):
    """One ``history`` entry: ``EpochResult.as_dict()`` (``aezoo.epochs.COLUMNS``, terms)."""

    model_config = ConfigDict(extra="forbid")
    epoch: Whole
    train_loss: Number
    val_loss: Number
    seconds: Number
    images_per_s: Number
    lr: Number = 0.0
    terms: dict[str, Number] = {}


assert tuple(EpochRow.model_fields) == (*COLUMNS, "terms")  # the record's own fields


class StateInfo(_Frozen):
    """The JSON part of a state file that a resume uses (other keys are ignored):
    values the loop cannot use are refused before anything is restored."""

    epoch: Annotated[int, Strict(), Field(ge=1)]
    step: Count
    global_step: Whole
    steps_per_epoch: Whole
    world_size: Whole
    loss_count: Count
    epoch_seconds: Annotated[float, Strict(), Field(ge=0.0, allow_inf_nan=False)]
    stopped: str | None = None
    logged: list[tuple[str, Number, Count]] = []  # [name, host sum, calls]
    optimizer: OptimizerInfo
    scaler: dict[str, Any] = {}
    history: list[EpochRow]
    callbacks: dict[str, dict[str, Any]] = {}
    exactness: dict[str, Any] | None = None
    sampler: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _position(self) -> StateInfo:
        spe, epoch, step = self.steps_per_epoch, self.epoch, self.step
        if step > spe:
            raise ValueError(f"step is {step}, not a whole number from 0 to the epoch's "
                             f"{spe} steps")
        if self.global_step != (epoch - 1) * spe + step:
            raise ValueError(f"global_step is {self.global_step}, but epoch {epoch}, step "
                             f"{step} of {spe} per epoch is step {(epoch - 1) * spe + step}")
        return self


_EXPECTED = {"int_type": "a whole number", "float_type": "a number",
             "finite_number": "a number", "string_type": "a string"}


def describe_error(error: ErrorDetails) -> str:
    """One ValidationError entry as the corrupt-state message's detail."""
    loc, kind = error["loc"], error["type"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" if len(p) <= 60 else
                    f".{p[:40]}..." for p in loc).lstrip(".")  # keys are the file's: bound them
    if loc[:1] == ("history",) and len(loc) > 1:
        return f"history[{loc[1]}] is not an epoch's numbers ({', '.join(EpochRow.model_fields)})"
    if kind == "missing":
        return f"{where} is missing"
    if kind in ("list_type", "tuple_type"):
        return f"{where} is not a list"
    if kind in ("dict_type", "model_type"):
        return f"{where} is not an object"
    if kind == "value_error":  # ours: a whole sentence, or what the value is not
        text = str(error["ctx"]["error"])
        return f"{where} is {short_repr(error['input'])}, not {text}" if loc else text
    expected = _EXPECTED.get(kind, error["msg"])
    if kind == "greater_than_equal":
        number = "a whole number" if isinstance(error["input"], int) else "a number"
        expected = f"{number} from {error['ctx']['ge']}"
    return f"{where} is {short_repr(error['input'])}, not {expected}"
