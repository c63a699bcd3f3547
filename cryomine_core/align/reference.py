"""References for the search: Fourier transforms ready for interpolation, with their own coverage.

A reference is a volume in the particle box plus, optionally, its *coverage*: the fraction of
Fourier space it actually observes (``(N, N, N // 2 + 1)`` rfft layout, values in [0, 1]). A
wedge-compensated average of many particles covers nearly everything (coverage 1); a single
subtomogram used as a seed reference covers its own tilt range only. The constrained
correlation restricts every comparison to the region both the particle and the reference
observe, so the coverage enters the score (:mod:`.search`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryomine_core.align.spectra import PaddedSpectrum

__all__ = ["SearchReference", "rfft_to_centred_full"]


def rfft_to_centred_full(values: torch.Tensor) -> torch.Tensor:
    """Real, Friedel-symmetric rfft-layout values ``(..., N, N, N // 2 + 1)`` -> centred full grid ``(..., N, N, N)``.

    Uses ``v(-k) = v(k)``; index ``N // 2`` of each axis of the result is frequency 0.
    """
    n = values.shape[-3]
    half = values.shape[-1]
    full = values.new_zeros((*values.shape[:-1], n))
    full[..., :half] = values
    if n > half:
        # index x >= half holds frequency x - n; its Friedel partner is (-kz, -ky, n - x)
        neg = torch.arange(n, device=values.device)
        neg = (-neg) % n
        mirrored = values[..., neg, :, :][..., :, neg, :]
        full[..., half:] = mirrored[..., torch.arange(n - half, 0, -1, device=values.device)]
    return torch.fft.fftshift(full, dim=(-3, -2, -1))


class SearchReference:
    """One or more references prepared for interpolation at rotated frequencies.

    Args:
        volumes: ``(R, N, N, N)`` (or ``(N, N, N)``) reference volumes (zyx), centred at ``N // 2``.
        coverage: ``(R, N, N, N // 2 + 1)`` rfft-layout coverage in [0, 1], or None (complete).
        mask: real-space mask ``(N, N, N)`` multiplied into every reference, or None.
        pad: oversampling of the interpolated transforms.
    """

    def __init__(self, volumes: torch.Tensor, coverage: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, pad: int = 2):
        vols = volumes if volumes.ndim == 4 else volumes[None]
        vols = vols.float()
        if mask is not None:
            vols = vols * mask.to(vols.device, vols.dtype)
        vols = vols - vols.mean(dim=(-3, -2, -1), keepdim=True)
        self.n_refs, self.box = vols.shape[0], vols.shape[-1]
        self.device = vols.device
        self.spectrum = PaddedSpectrum(vols, pad=pad)
        self._coverage = None
        if coverage is not None:
            cov = coverage if coverage.ndim == 4 else coverage[None]
            full = rfft_to_centred_full(cov.float().clamp(0.0, 1.0).to(self.device))
            self._coverage = full[:, None]  # (R, 1, N, N, N)

    @property
    def complete(self) -> bool:
        """True when every reference covers all of Fourier space."""
        return self._coverage is None

    def sample(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Values and coverage at frequencies ``k`` ``(..., 3)`` (xyz cycles/voxel), shared by all references.

        Returns:
            ``(values (R, ...) complex64, coverage (R, ...) float32 or None)``.
        """
        mid = k.shape[:-1]
        flat = k.reshape(-1, 3)
        values = self.spectrum.sample(flat.expand(self.n_refs, *flat.shape)).reshape(self.n_refs, *mid)
        if self._coverage is None:
            return values, None
        n = self.box
        pos = n // 2 + flat * n
        grid = (2.0 * pos / (n - 1) - 1.0).reshape(1, 1, 1, -1, 3).expand(self.n_refs, 1, 1, -1, 3)
        cov = F.grid_sample(self._coverage, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return values, cov.reshape(self.n_refs, *mid)
