"""Contrast check: does a given reference show density with the same sign as the particles?

A reference of the opposite contrast (bright density against the dark density of raw,
CTF-uncorrected tomograms, for instance the noise-free maps ``cryomine simulate subtomograms``
writes beside its CTF-affected particles) does not make the search fail: every particle still
finds a pose with a positive score (the reference's density turned or shifted onto the
particle's background), so a refinement runs, flags nothing, reports a plausible FSC, and
returns random poses. The check looks for that before the refinement:

1. a sample of particles (at most :data:`CHECK_SAMPLE`, drawn with the seed);
2. a low band, :data:`CHECK_BAND` cycles/voxel by default (the band a refinement starts in;
   well below Nyquist, and below the first CTF zero at usual defocus, where the particles'
   contrast has one sign);
3. a coarse search (global grid of at least :data:`CHECK_STEP_DEG` degrees, one local stage)
   for the best pose of each particle with the reference as given and with the reference
   negated, scored by the search's own missing-wedge aware constrained correlation
   (:mod:`.search`);
4. per particle, the higher of the two best scores wins. The verdict is ``opposite`` when the
   negated reference wins on at least :data:`CHECK_MIN_FRACTION` of the sample *and* a one-sided
   sign test (H0: either wins with probability 1/2) gives ``p <= CHECK_MAX_P``; ``agree`` for the
   same in favour of the reference as given; ``inconclusive`` otherwise (too few particles, or
   too little signal in the band to tell).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from cryomine_core.align.particle_source import ParticleSource, as_source
from cryomine_core.align.reference import SearchReference
from cryomine_core.align.search import SearchSettings, align_particles

__all__ = ["ContrastCheck", "check_contrast", "contrast_verdict", "sign_test_p", "check_search_settings",
           "CHECK_SAMPLE", "CHECK_BAND", "CHECK_STEP_DEG", "CHECK_MIN_FRACTION", "CHECK_MAX_P",
           "AGREE", "OPPOSITE", "INCONCLUSIVE"]

CHECK_SAMPLE = 64
"""Particles used by the check (at most)."""
CHECK_BAND = 0.15
"""Band of the check, cycles/voxel (capped by the caller's low-pass)."""
CHECK_STEP_DEG = 20.0
"""Coarsest global angular step of the check (the run's own step when that is coarser)."""
CHECK_MIN_FRACTION = 0.75
"""Share of the sample one sign must win for a verdict."""
CHECK_MAX_P = 0.01
"""Largest one-sided sign-test p-value for a verdict."""

AGREE, OPPOSITE, INCONCLUSIVE = "agree", "opposite", "inconclusive"


@dataclass
class ContrastCheck:
    """Outcome of :func:`check_contrast` (scores are constrained correlations, in [-1, 1]).

    Attributes:
        verdict: ``agree``, ``opposite`` or ``inconclusive``.
        n_particles: particles in the sample.
        median_score_as_given, median_score_negated: median over the sample of each particle's
            best score with the reference as given / negated.
        negated_wins: particles whose best score is higher with the negated reference.
        p_value: one-sided sign-test p-value of the winning side.
        band_cycles_per_voxel, angular_step_deg: band and global step of the check's search.
        seconds: time taken.
    """

    verdict: str
    n_particles: int
    median_score_as_given: float
    median_score_negated: float
    negated_wins: int
    p_value: float
    band_cycles_per_voxel: float
    angular_step_deg: float
    seconds: float

    def summary(self) -> str:
        """One phrase with the figures, e.g. ``score +0.41 as given vs +0.10 negated on 40 particles (...)``."""
        return (f"median best score {self.median_score_as_given:+.3f} as given vs {self.median_score_negated:+.3f} "
                f"negated on {self.n_particles} particles; negated wins on {self.negated_wins}, "
                f"sign-test p {self.p_value:.2g}")

    def as_dict(self) -> dict:
        """JSON-ready fields (for metrics.json)."""
        return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sign_test_p(wins: int, n: int) -> float:
    """One-sided sign test: probability of at least ``wins`` successes in ``n`` fair coin flips."""
    if n <= 0:
        return 1.0
    return float(sum(math.comb(n, i) for i in range(max(0, wins), n + 1)) / 2.0**n)


def contrast_verdict(negated_wins: int, n: int, min_fraction: float = CHECK_MIN_FRACTION,
                     max_p: float = CHECK_MAX_P) -> tuple[str, float]:
    """``(verdict, p-value of the winning side)`` from the number of particles the negated reference wins."""
    given_wins = n - negated_wins
    if negated_wins >= given_wins:
        p = sign_test_p(negated_wins, n)
        clear = n > 0 and negated_wins >= min_fraction * n and p <= max_p
        return (OPPOSITE if clear else INCONCLUSIVE), p
    p = sign_test_p(given_wins, n)
    clear = given_wins >= min_fraction * n and p <= max_p
    return (AGREE if clear else INCONCLUSIVE), p


def check_search_settings(search: SearchSettings, band: float, step_deg: float = CHECK_STEP_DEG) -> SearchSettings:
    """The run's search made coarse and low-band: global step >= ``step_deg``, one local stage, 2 candidates."""
    step = max(float(search.angular_step_deg), float(step_deg))
    return replace(search, angular_step_deg=step, final_step_deg=step / 3.0, f_max=band, coarse_f_max=band,
                   f_min=0.0, n_candidates=2, local_only_radius_deg=None)


def best_scores(particles: torch.Tensor, tilt: torch.Tensor, reference: torch.Tensor, search: SearchSettings,
                mask: torch.Tensor | None, batch_size: int = 32) -> torch.Tensor:
    """Best score ``(B,)`` of particles ``(B, N, N, N)`` (tilt ``(B, 2)`` degrees) against ``reference (N, N, N)``."""
    ref = SearchReference(reference, mask=mask, pad=search.pad)
    return align_particles(particles, tilt, ref, search, batch_size=batch_size).scores


def sample_indices(n_total: int, n_sample: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``n_sample`` of ``n_total`` items, drawn without replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_total)[: min(n_total, n_sample)])


def check_contrast(particles: torch.Tensor | ParticleSource, tilt: torch.Tensor, reference: torch.Tensor,
                   search: SearchSettings, *,
                   mask: torch.Tensor | None = None, band: float = CHECK_BAND, n_sample: int = CHECK_SAMPLE,
                   seed: int = 0, batch_size: int = 32) -> ContrastCheck:
    """Compare the reference as given and negated on a sample of particles (see the module docstring).

    Args:
        particles: ``(B, N, N, N)`` normalised subtomograms on the compute device, or a
            :class:`ParticleSource` (only the sample is read).
        tilt: ``(B, 2)`` tilt ranges, degrees.
        reference: ``(N, N, N)`` reference, same device.
        search: the run's search settings (symmetry, max shift, pad are kept; step and band are coarsened).
        mask: real-space mask ``(N, N, N)`` applied to the reference, or None.
        band: highest frequency used, cycles/voxel.
        n_sample: particles used at most.
        seed: sample draw.
    """
    t0 = time.perf_counter()
    settings = check_search_settings(search, band)
    source = as_source(particles)
    rows = sample_indices(source.n, n_sample, seed)
    idx = torch.as_tensor(rows, device=tilt.device)
    sample, sample_tilt = source.take(rows), tilt[idx]
    as_given = best_scores(sample, sample_tilt, reference, settings, mask, batch_size)
    negated = best_scores(sample, sample_tilt, -reference, settings, mask, batch_size)
    n = int(idx.numel())
    negated_wins = int((negated > as_given).sum())
    verdict, p = contrast_verdict(negated_wins, n)
    return ContrastCheck(verdict=verdict, n_particles=n, median_score_as_given=float(as_given.median()),
                         median_score_negated=float(negated.median()), negated_wins=negated_wins, p_value=p,
                         band_cycles_per_voxel=float(band), angular_step_deg=settings.angular_step_deg,
                         seconds=time.perf_counter() - t0)
