"""Conformance kit: the checks a plugin author runs in their own CI.

One call checks a whole variant (and the encoder, decoder and loss it uses)::

    from aezoo.testing import check_variant

    def test_my_variant_conforms():
        check_variant("my-variant")

``check_variant`` runs every check below and raises one ``AssertionError`` that lists
each failed check with what is wrong. The checks are also plain functions taking a
model or descriptor, for finer-grained tests:

- ``check_descriptor``: the entry point imports, is the right descriptor type, valid
  fields; the descriptor module does not import torch (``aezoo list`` stays fast).
- ``check_params_model``: defaults valid, JSON round trip, unknown keys and wrongly
  typed values rejected (plus any ``bad`` examples you give), JSON schema renders.
- ``check_shapes``: encode/decode round trip at every claimed shape (the variant's
  ``input_shape`` and ``example_shapes``); ``check_shape_errors``: shapes a model
  cannot serve raise ``aezoo.errors.ShapeError`` (or another AezooError), never a raw
  torch error.
- ``check_gradients``: every parameter gets a finite, non-zero gradient.
- ``check_determinism``: same seed, same weights and same first optimiser step.
- ``check_save_load``: save -> load is bit-exact, outputs identical.
- ``check_bf16``: a bf16 autocast forward/backward on CPU works and stays close to fp32.
- ``check_loss``: a scalar, finite for logits of +-100, lower for a perfect prediction.
- ``check_param_count``: the declared ``param_count`` is the real one.
- ``check_metric``, ``check_regularizer``, ``check_dataset``, ``check_command``,
  ``check_callback``: the contract of each of those kinds of parts.
- ``check_resume``: 1 epoch then ``--resume`` equals 2 epochs straight, bit for bit.
- ``check_weight_set``: a declared weight set ``VARIANT.TAG`` loads, its file has the
  declared SHA-256, and it measures the metrics it declares on the data you give.
"""

from __future__ import annotations

from aezoo.testing.descriptors import (
    check_descriptor,
    check_params_model,
    check_torch_free,
    component_names,
    variant_names,
)
from aezoo.testing.kit import (
    check_callback,
    check_command,
    check_dataset,
    check_metric,
    check_regularizer,
    check_resume,
)
from aezoo.testing.models import (
    PROBE_SHAPES,
    check_bf16,
    check_determinism,
    check_gradients,
    check_loss,
    check_param_count,
    check_save_load,
    check_shape_errors,
    check_shapes,
)
from aezoo.testing.parts import check_loss_component, check_transform
from aezoo.testing.variant import check_variant
from aezoo.testing.weights import check_weight_set

__all__ = ["PROBE_SHAPES", "check_bf16", "check_callback", "check_command", "check_dataset",
           "check_descriptor", "check_determinism", "check_gradients", "check_loss",
           "check_loss_component", "check_metric", "check_param_count", "check_params_model",
           "check_regularizer", "check_resume", "check_save_load", "check_shape_errors",
           "check_shapes", "check_torch_free", "check_transform", "check_variant",
           "check_weight_set", "component_names", "variant_names"]
