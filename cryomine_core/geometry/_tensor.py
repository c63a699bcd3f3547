"""Private helpers: turn array-likes into floating point torch tensors."""

from __future__ import annotations

import torch


def as_float_tensor(
    x,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Return ``x`` as a floating point tensor.

    Tensors keep their dtype and device unless ``dtype``/``device`` are given. Numpy arrays keep
    their precision (float64 stays float64); integer or boolean data become the default float
    dtype (``torch.get_default_dtype()``).
    """
    t = torch.as_tensor(x, device=device)
    if dtype is not None:
        return t.to(dtype)
    if not (t.is_floating_point() or t.is_complex()):
        t = t.to(torch.get_default_dtype())
    return t


def like(x, reference: torch.Tensor) -> torch.Tensor:
    """Return ``x`` as a tensor with the dtype and device of ``reference``."""
    return torch.as_tensor(x, dtype=reference.dtype, device=reference.device)


def check_last_dims(t: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    """Raise ``ValueError`` unless the trailing dimensions of ``t`` are ``shape``."""
    n = len(shape)
    if t.ndim < n or tuple(t.shape[t.ndim - n:]) != tuple(shape):
        expected = "(..., " + ", ".join(str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")
