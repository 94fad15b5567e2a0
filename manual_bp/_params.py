"""Validation of parameter NamedTuples (MLPParams, LogRegParams)."""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

import numpy as np

from manual_bp._validation import FloatArray, check_finite, shape_str

P = TypeVar("P", bound=NamedTuple)

__all__ = ["check_params", "params_dtype"]


def check_params(name: str, params: object, kind: type[P]) -> P:
    """Check that ``params`` is a ``kind`` whose fields are finite floating arrays of one dtype.

    Returns the params with every field converted by ``np.asarray`` (no copy for arrays).
    Shapes are checked by the caller, which knows how they relate.
    """
    if not isinstance(params, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {type(params).__name__}")
    fields: dict[str, FloatArray] = {}
    for field, value in zip(params._fields, params, strict=True):
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise TypeError(
                f"{name}.{field} must be a floating array, got dtype {arr.dtype} "
                f"(shape {shape_str(arr.shape)})"
            )
        check_finite(f"{name}.{field}", arr)
        fields[field] = arr
    dtypes = {a.dtype for a in fields.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{f} is {a.dtype}" for f, a in fields.items())
        raise TypeError(f"{name} must have one dtype for all fields, but {listing}")
    return params._replace(**fields)


def params_dtype(params: NamedTuple) -> np.dtype[Any]:
    """The common dtype of a checked params tuple."""
    dtype: np.dtype[Any] = np.asarray(params[0]).dtype
    return dtype


def check_shape(name: str, arr: FloatArray, expected: tuple[int, ...], why: str) -> None:
    """Raise ``ValueError`` unless ``arr.shape == expected``; ``why`` says where it comes from."""
    if arr.shape != expected:
        raise ValueError(
            f"{name} has shape {shape_str(arr.shape)} but {why} requires {shape_str(expected)}"
        )
