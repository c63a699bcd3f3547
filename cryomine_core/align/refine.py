"""Iterative gold-standard refinement: reference-free start, alignment, averaging, FSC.

1. **Half sets**: particles are split at random into two balanced halves (or the split given is
   kept); each half is aligned to its own reference and averaged on its own, so the FSC between
   the two half maps is an unbiased resolution estimate (Scheres & Chen 2012).
2. **Start**: a given reference is low-passed to ``initial_f`` (removing high-resolution detail
   that would bias the halves); without one, a *reference-free* start is built from the data:
   one particle (with its own missing wedge as coverage) seeds the reference, a subset of the
   particles is aligned to it and averaged with wedge compensation, and this is repeated a few
   times at low resolution, re-centring the reference each time. Both halves start from it.
3. **Iterations**: align each half to its reference (global search, local refinement to
   sub-degree), average each half, compute the FSC between the half maps (inside a soft mask),
   and low-pass each half map at its FSC-0.143 resolution to make the next references. The
   band used for alignment follows the resolution. Half set 2 is registered onto half set 1
   once, in the first iteration (halves of a reference-free start can settle in different
   frames); afterwards the halves never see each other.
4. **Honest resolution**: the halves share information by construction up to the band of the
   common start and of that one registration; an FSC 0.143 no finer than that resolution is
   flagged as not meaningful (``resolution_meaningful``): pure noise gets an "average" whose
   halves agree exactly there.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from cryomine_core import distributed
from cryomine_core.align.average import FourierAverager
from cryomine_core.align.checkpoint import particles_digest, resume_state, save_checkpoint
from cryomine_core.align.defaults import DEFAULT_CHUNK
from cryomine_core.align.particle_source import ParticleSource, as_source
from cryomine_core.align.reference import SearchReference
from cryomine_core.align.scoring import soft_sphere_mask
from cryomine_core.align.search import AlignmentResult, SearchSettings, align_particles
from cryomine_core.align.spectra import PaddedSpectrum
from cryomine_core.errors import CryomineError
from cryomine_core.fourier import (
    FSC_THRESHOLD_GOLD_STANDARD,
    FSC_THRESHOLD_HALF,
    fsc,
    lowpass,
    missing_wedge_mask,
    resolution_at,
    shell_frequencies,
)
from cryomine_core.geometry import shift_volume_fourier

__all__ = ["RefineSettings", "RefineResult", "Poses", "align_halves", "batch_chunk", "half_rows", "refine",
           "reference_free_start", "half_map_fsc", "centre_volume"]

log = logging.getLogger("cryomine")


@dataclass
class RefineSettings:
    """Settings of :func:`refine`.

    Attributes:
        iterations: refinement iterations after the start.
        search: search settings (angular step, max shift, symmetry, ...); its band is set per iteration.
        lowpass_angstrom: never align with detail finer than this (Å); None: up to 0.45 cycles/voxel.
        initial_f: band of the start (cycles/voxel): the given reference is low-passed there and the
            reference-free start is built there.
        start_iterations: alignment rounds of the reference-free start.
        start_subset: particles used by the reference-free start (at most).
        guard_fraction: averaging guard (see :mod:`.average`).
        lowpass_to_fsc: filter each half reference by its FSC (``sqrt(2 FSC / (1 + FSC))`` per shell, up to
            the last shell of the FSC's first run above 0.143, one-shell dips at CTF zeros allowed);
            otherwise low-pass it at the alignment band.
        mask: real-space mask ``(N, N, N)`` for references and the FSC; None: a soft sphere.
        seed: random seed (half sets, seed particle, subsets).
        batch_size: particles per batch.
        local_radius_deg: multi-reference alignment only (:mod:`.mra`): None searches every round
            globally against all references at once; a radius (degrees) aligns each particle to each
            reference on its own, globally in the first round and afterwards only within this angle of
            its pose for that reference in the round before (poses ``(B, K)`` kept per particle).
        chunk: particles read (from disk, for a :class:`ParticleFiles` source) at a time in each pass;
            memory depends on it and the box, not on the number of particles. The result does not
            depend on it (up to float summation order).
    """

    iterations: int = 4
    search: SearchSettings = field(default_factory=SearchSettings)
    lowpass_angstrom: float | None = None
    initial_f: float = 0.15
    start_iterations: int = 3
    start_subset: int = 200
    guard_fraction: float = 0.1
    lowpass_to_fsc: bool = True
    mask: torch.Tensor | None = None
    seed: int = 0
    batch_size: int = 32
    chunk: int = DEFAULT_CHUNK
    local_radius_deg: float | None = None


@dataclass
class RefineResult:
    """Output of :func:`refine` (``B`` particles, box ``N``).

    Attributes:
        rotations, shifts, scores, failed: final poses ``(B, 3, 3)``, ``(B, 3)`` voxels, scores ``(B,)``,
            failure flags ``(B,)``.
        half_sets: ``(B,)`` int 1 or 2.
        average: ``(N, N, N)`` average of both halves; half_maps ``(2, N, N, N)``.
        fsc: ``(n_shells,)`` FSC of the half maps (masked); frequencies ``(n_shells,)`` in 1/Å.
        resolution_0143, resolution_05: resolutions in Å.
        history: one dict per iteration (resolution, band, mean score, failures, seconds).
        mask: the mask used for the FSC.
        shared_resolution: resolution (Å) up to which the two halves share information by
            construction: the common start (reference or reference-free start) and the one
            registration of half 2 onto half 1 in the first iteration. Agreement there proves nothing.
        resolution_meaningful: False when the FSC 0.143 resolution is not finer than
            ``shared_resolution``: the half maps agree only where they were made to agree, so the
            average may be noise (or the reference's image); the resolution then says nothing.
    """

    rotations: torch.Tensor
    shifts: torch.Tensor
    scores: torch.Tensor
    failed: torch.Tensor
    half_sets: torch.Tensor
    average: torch.Tensor
    half_maps: torch.Tensor
    fsc: torch.Tensor
    frequencies: torch.Tensor
    resolution_0143: float
    resolution_05: float
    history: list = field(default_factory=list)
    mask: torch.Tensor | None = None
    shared_resolution: float = float("inf")
    resolution_meaningful: bool = True


def half_map_fsc(half_maps: torch.Tensor, voxel_size: float, mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """FSC of two half maps ``(2, N, N, N)``: ``(curve, frequencies 1/Å, res_0143 Å, res_05 Å)``."""
    shape = tuple(half_maps.shape[-3:])
    curve = fsc(half_maps[0], half_maps[1], mask=mask)
    freq_vox = shell_frequencies(shape, device=curve.device)
    r143 = float(resolution_at(curve, FSC_THRESHOLD_GOLD_STANDARD, voxel_size, frequencies=freq_vox))
    r05 = float(resolution_at(curve, FSC_THRESHOLD_HALF, voxel_size, frequencies=freq_vox))
    return curve, shell_frequencies(shape, voxel_size, device=curve.device), r143, r05


def fsc_band(curve: torch.Tensor, threshold: float = FSC_THRESHOLD_GOLD_STANDARD) -> int:
    """Last shell of the FSC's first run above ``threshold``, allowing one-shell dips (CTF zeros)."""
    values = curve.tolist()
    last = 1
    for s in range(1, len(values)):
        if values[s] >= threshold:
            last = s
        elif s + 1 >= len(values) or values[s + 1] < threshold:
            break
    return last


def fsc_weighted(volume: torch.Tensor, curve: torch.Tensor, last_shell: int) -> torch.Tensor:
    """Filter a half map by ``sqrt(2 FSC / (1 + FSC))`` per shell (0 beyond ``last_shell``)."""
    from cryomine_core.fourier import shell_index

    shape = tuple(volume.shape[-3:])
    c = curve.clamp(min=0.0)
    w = torch.sqrt(2.0 * c / (1.0 + c))
    w[last_shell + 1:] = 0.0
    w = torch.cat([w, w.new_zeros(1)])  # overflow shell (corners) -> 0
    idx = shell_index(shape, rfft=True, device=volume.device)
    ft = torch.fft.rfftn(torch.fft.ifftshift(volume, dim=(-3, -2, -1)), dim=(-3, -2, -1)) * w[idx]
    return torch.fft.fftshift(torch.fft.irfftn(ft, s=shape, dim=(-3, -2, -1)), dim=(-3, -2, -1))


def centre_volume(volume: torch.Tensor, f_max: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift a volume so that the centroid of its low-passed contrast sits at the box centre.

    The contrast is ``|v - median(v)|`` of the volume low-passed to ``f_max`` cycles/voxel, so the
    result does not depend on whether density is bright or dark. Returns ``(centred, shift xyz)``.
    """
    n = volume.shape[-1]
    smooth = lowpass(volume, 1.0 / f_max, 1.0)
    contrast = (smooth - smooth.median()).abs() * soft_sphere_mask(n, device=volume.device)
    ax = torch.arange(n, dtype=torch.float32, device=volume.device) - n // 2
    total = contrast.sum().clamp_min(1e-30)
    cz = (contrast.sum((1, 2)) * ax).sum() / total
    cy = (contrast.sum((0, 2)) * ax).sum() / total
    cx = (contrast.sum((0, 1)) * ax).sum() / total
    shift = -torch.stack([cx, cy, cz])
    return shift_volume_fourier(volume, shift), shift


def band_limit(volume: torch.Tensor, f: float) -> torch.Tensor:
    return lowpass(volume, 1.0 / max(f, 1e-3), 1.0, falloff_fftfreq=min(0.05, f / 2))


def _align_and_average(particles, tilt, ref: SearchReference, search: SearchSettings, settings: RefineSettings,
                       averager: FourierAverager | None, avg_class: int, cache: dict | None = None) -> AlignmentResult:
    """Align in batches (padded transforms computed once per batch) and accumulate the average.
    ``cache``: kept by the caller across calls with the same reference (see :func:`align_particles`)."""
    cache = {} if cache is None else cache
    parts = []
    b = settings.batch_size
    for i in range(0, particles.shape[0], b):
        sl = slice(i, i + b)
        spec = PaddedSpectrum(particles[sl], pad=search.pad)
        res = align_particles(particles[sl], tilt[sl], ref, search, batch_size=b, spectra=[spec], ref_cache=cache)
        if averager is not None:
            averager.add(spec, res.rotations, res.shifts, tilt[sl],
                         torch.full((res.rotations.shape[0],), avg_class, device=particles.device), ~res.failed)
        parts.append(res)
    return AlignmentResult(*(torch.cat([getattr(p, f) for p in parts]) for f in
                             ("rotations", "shifts", "scores", "reference_index", "failed", "scores_per_reference")))


@dataclass
class Poses:
    """Per-particle state of a pass: rotations ``(B, 3, 3)``, shifts ``(B, 3)`` voxels, scores ``(B,)``,
    failure flags ``(B,)`` (rows a process did not visit stay zero until :meth:`gather`)."""

    rotations: torch.Tensor
    shifts: torch.Tensor
    scores: torch.Tensor
    failed: torch.Tensor

    @classmethod
    def zeros(cls, b: int, device) -> Poses:
        return cls(torch.zeros((b, 3, 3), device=device), torch.zeros((b, 3), device=device),
                   torch.zeros(b, device=device), torch.zeros(b, dtype=torch.bool, device=device))

    def gather(self) -> None:
        """Under ``torchrun``: add every process's rows into everyone's (each row was set by one process)."""
        if distributed.world_size() == 1:
            return
        failed = self.failed.float()
        distributed.sum_(self.rotations, self.shifts, self.scores, failed)
        self.failed = failed > 0.5


def batch_chunk(settings: RefineSettings) -> int:
    """``settings.chunk`` rounded up to whole batches, so the batches do not depend on the chunk size."""
    b = settings.batch_size
    return -(-settings.chunk // b) * b


def half_rows(halves: torch.Tensor, h: int, batch: int) -> np.ndarray:
    """This process's rows of half set ``h``: whole batches of the half's rows in order (:func:`distributed.share`)."""
    rows = (halves == h).nonzero().flatten().cpu().numpy()
    return rows[distributed.share(rows.size, batch)]


def align_halves(source: ParticleSource, tilt: torch.Tensor, halves: torch.Tensor, refs: list[SearchReference],
                 search: SearchSettings, settings: RefineSettings, averager: FourierAverager) -> Poses:
    """One pass over this process's share of the particles, read ``settings.chunk`` at a time: each
    particle is aligned to the reference of its half set (``halves`` 1/2 -> ``refs[0]``/``refs[1]``)
    and added to that half's average; the sums and poses are then added over the processes.

    The particles of a half are aligned in batches of ``settings.batch_size`` in row order whatever
    the chunk size and the number of processes, so neither changes the result beyond the order in
    which the processes' sums are added."""
    poses = Poses.zeros(source.n, tilt.device)
    for h in (1, 2):
        cache: dict = {}
        for rows, vols in source.chunks(batch_chunk(settings), half_rows(halves, h, settings.batch_size)):
            res = _align_and_average(vols, tilt[rows], refs[h - 1], search, settings, averager, h - 1, cache)
            poses.rotations[rows], poses.shifts[rows], poses.scores[rows], poses.failed[rows] = (
                res.rotations, res.shifts, res.scores, res.failed)
    distributed.sum_(averager.numerator, averager.weight, averager.count)
    poses.gather()
    return poses


def _register_halves(source: ParticleSource, tilt, halves, poses: Poses, half_maps, averager: FourierAverager,
                     search: SearchSettings, settings: RefineSettings, mask) -> tuple[float, float] | None:
    """Bring half set 2 into the frame of half set 1 when the two half maps have drifted apart.

    Independent halves can settle in different (e.g. pseudo-symmetry related) frames. The half-2
    map is aligned to the half-1 map (a rigid search, both fully covered); if it moved by more than
    1 degree or 0.5 voxel, the half-2 poses are composed with that transform (``R <- R G``,
    ``t <- t + R g``) and half 2 is re-averaged (streamed, each process its share). The transform is
    rank 0's under ``torchrun``. Updates ``poses`` and ``averager`` in place.
    Returns ``(angle_deg, shift_voxels)`` of the correction, or None when none was needed.
    """
    from cryomine_core.geometry import rotation_angle_deg

    dev = tilt.device
    full = torch.tensor([[-90.0, 90.0]], device=dev)
    reg = align_particles(half_maps[1:2], full, SearchReference(half_maps[0], mask=mask, pad=search.pad), search)
    g_rot, g_shift = reg.rotations[0].contiguous(), reg.shifts[0].contiguous()
    distributed.broadcast_(g_rot, g_shift)
    angle = float(rotation_angle_deg(g_rot))
    if angle <= 1.0 and float(g_shift.norm()) <= 0.5:
        return None
    rot, shifts = poses.rotations, poses.shifts
    sel = (halves == 2).nonzero().flatten()
    old = rot[sel].clone()
    rot[sel] = old @ g_rot
    shifts[sel] = shifts[sel] + (old @ g_shift[:, None])[..., 0]
    fresh = FourierAverager(averager.box, 2, settings.search.symmetry, dev)
    for rows, vols in source.chunks(batch_chunk(settings), half_rows(halves, 2, settings.batch_size)):
        for i in range(0, rows.numel(), settings.batch_size):
            j = rows[i:i + settings.batch_size]
            fresh.add(PaddedSpectrum(vols[i:i + settings.batch_size], pad=search.pad), rot[j], shifts[j], tilt[j],
                      torch.ones(j.numel(), dtype=torch.long, device=dev), ~poses.failed[j])
    distributed.sum_(fresh.numerator, fresh.weight, fresh.count)
    averager.numerator[1], averager.weight[1], averager.count[1] = fresh.numerator[1], fresh.weight[1], fresh.count[1]
    log.info("  half set 2 re-registered onto half set 1: %.1f degrees, %.2f voxels", angle, float(g_shift.norm()))
    return angle, float(g_shift.norm())


def reference_free_start(particles: torch.Tensor | ParticleSource, tilt: torch.Tensor, settings: RefineSettings,
                         generator: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Build a starting reference from the particles alone (no template).

    Only the seed particle and the subset (at most ``settings.start_subset``) are read; every
    process of a ``torchrun`` builds the same start from the same draw.

    Returns ``(reference (N, N, N), coverage (N, N, N // 2 + 1))``.
    """
    source = as_source(particles)
    n_box = source.box
    dev = tilt.device
    f0 = settings.initial_f
    seed_index = int(generator.integers(source.n))
    ref = band_limit(source.take([seed_index])[0], f0)
    ref, _ = centre_volume(ref, min(f0, 0.1))
    cov = missing_wedge_mask((n_box,) * 3, float(tilt[seed_index, 0]), float(tilt[seed_index, 1]), device=dev)
    subset = np.sort(generator.permutation(source.n)[: settings.start_subset])
    sub = torch.as_tensor(subset, device=dev)
    subset_volumes = source.take(subset)
    search = band_search(settings.search, f0)
    mask = settings.mask if settings.mask is not None else soft_sphere_mask(n_box, device=dev)
    log.info("reference-free start: seed particle %d, %d particles, band %.3f cycles/voxel", seed_index + 1,
             sub.numel(), f0)
    for j in range(settings.start_iterations):
        sref = SearchReference(ref, coverage=cov, mask=mask, pad=search.pad)
        averager = FourierAverager(n_box, 1, settings.search.symmetry, dev)
        res = _align_and_average(subset_volumes, tilt[sub], sref, search, settings, averager, 0)
        if bool(res.failed.all()):
            raise CryomineError("reference-free start failed: no particle correlates with the seed. Check the "
                                "particles (contrast, box) or give a --reference.")
        ref = band_limit(averager.volumes(settings.guard_fraction)[0], f0)
        ref, shift = centre_volume(ref, min(f0, 0.1))
        cov = averager.coverage(settings.guard_fraction)[0]
        log.info("  start round %d/%d: mean score %.4f, re-centred by %.2f voxels", j + 1, settings.start_iterations,
                 float(res.scores[~res.failed].mean()), float(shift.norm()))
    return ref, cov


def band_search(base: SearchSettings, f: float) -> SearchSettings:
    from dataclasses import replace

    f = float(min(max(f, 0.05), 0.5))
    return replace(base, f_max=f, coarse_f_max=min(base.coarse_f_max, f))


CHECKPOINT_JOB = "cryomine align refine"


def run_fingerprint(particles, tilt, voxel_size, reference, settings: RefineSettings, halves) -> dict:
    """What determines a refinement's (or MRA's) result, to check a checkpoint against before resuming
    (``particles``: a tensor ``(B, N, N, N)`` or a :class:`ParticleSource`; the chunk size and the
    number of processes do not enter)."""
    source = as_source(particles)
    search = {k: v for k, v in asdict(settings.search).items() if isinstance(v, (int, float, str, type(None)))}
    return {"n_particles": source.n, "box": source.box, "voxel_size": float(voxel_size),
            "particles": source.digest(settings.chunk), "tilt": particles_digest(tilt[:, None, None, :]),
            "reference": None if reference is None else particles_digest(reference[None]),
            "mask": None if settings.mask is None else particles_digest(settings.mask[None]),
            "half_sets": None if halves is None else particles_digest(halves.double()[:, None, None, None]),
            "search": sorted(search.items()), "lowpass_angstrom": settings.lowpass_angstrom,
            "initial_f": settings.initial_f, "start_iterations": settings.start_iterations,
            "start_subset": settings.start_subset, "guard_fraction": settings.guard_fraction,
            "lowpass_to_fsc": settings.lowpass_to_fsc, "seed": settings.seed,
            "local_radius_deg": settings.local_radius_deg}


def refine(particles: torch.Tensor | ParticleSource, tilt_ranges: torch.Tensor, voxel_size: float,
           reference: torch.Tensor | None = None, settings: RefineSettings | None = None,
           half_sets: torch.Tensor | None = None, checkpoint: str | os.PathLike | None = None,
           resume: bool = False) -> RefineResult:
    """Gold-standard refinement of particles ``(B, N, N, N)`` with tilt ranges ``(B, 2)`` (degrees).

    Args:
        particles: subtomograms on the compute device, or a :class:`ParticleSource` (e.g. the files
            of a table, read ``settings.chunk`` at a time: only poses and scores are kept per particle).
        tilt_ranges: per-particle tilt ranges.
        voxel_size: Å per voxel (for resolutions).
        reference: optional starting reference ``(N, N, N)``; None builds a reference-free start.
        settings: refinement settings.
        half_sets: optional ``(B,)`` split (values 1/2) to keep; default a random balanced split.
        checkpoint: file for the state after each iteration (:mod:`.checkpoint`); None: none kept.
        resume: continue from ``checkpoint`` (made with the same inputs and settings; more
            ``iterations`` may be asked for) to the uninterrupted run's result.

    Under ``torchrun`` (:mod:`cryomine_core.distributed`) each process aligns its share of the
    particles; the half-map sums and the poses are added over the processes, so every process holds
    the one result (rank 0 alone writes the checkpoint).

    Returns:
        :class:`RefineResult`.
    """
    settings = settings or RefineSettings()
    source = as_source(particles)
    b, n_box = source.n, source.box
    dev = source.device
    if b < 2:
        raise CryomineError(f"refinement needs at least 2 particles (one per half set); got {b}.")
    settings.search.validate(n_box)
    if settings.iterations < 1:
        raise CryomineError(f"--iterations {settings.iterations} is invalid: give at least 1.")
    if settings.chunk < 1:
        raise CryomineError(f"--chunk {settings.chunk}: give at least 1 subtomogram per chunk.")
    rng = np.random.default_rng(settings.seed)
    tilt = tilt_ranges.to(dev, torch.float32)
    if half_sets is None:
        halves = torch.as_tensor(rng.permutation(np.arange(b) % 2) + 1, device=dev)
    else:
        halves = half_sets.to(dev).long()
        if not set(torch.unique(halves).tolist()) <= {1, 2} or (halves == 1).sum() == 0 or (halves == 2).sum() == 0:
            raise CryomineError("the half-set column must hold 1 and 2, with particles in both halves.")
    mask = settings.mask if settings.mask is not None else soft_sphere_mask(n_box, device=dev)
    f_cap = 0.45 if settings.lowpass_angstrom is None else min(0.45, voxel_size / settings.lowpass_angstrom)
    if f_cap < 0.05:
        raise CryomineError(f"--lowpass-angstrom {settings.lowpass_angstrom} is coarser than 20 voxels "
                            f"({20 * voxel_size:g} Å); give a finer value.")
    f0 = min(settings.initial_f, f_cap)

    t0 = time.perf_counter()
    fingerprint = run_fingerprint(source, tilt, voxel_size, reference, settings, half_sets) if checkpoint else None
    f_align = min(max(f0 * 1.5, 0.15), f_cap)
    f_shared = max(f0, f_align)  # the halves share the common start and the first iteration's registration
    done = 0
    if resume:
        done, st = resume_state(checkpoint, CHECKPOINT_JOB, fingerprint, settings.iterations, dev)
        refs, covs, f_align = [st["ref1"], st["ref2"]], [st.get("cov1"), st.get("cov2")], float(st["f_align"])
        poses = Poses(st["rot"], st["shifts"], st["scores"], st["failed"])
        halves = st["halves"]
        history = list(st["history"])
        log.info("resuming from %s after iteration %d of %d", checkpoint, done, settings.iterations)
    else:
        if reference is None:
            start, start_cov = reference_free_start(source, tilt, settings, rng)
        else:
            start, start_cov = band_limit(reference.to(dev).float(), f0), None
        refs = [start, start]
        covs = [start_cov, start_cov]
        history = []
        poses = Poses.zeros(b, dev)
    result_fsc = None
    for it in range(done + 1, settings.iterations + 1):
        ti = time.perf_counter()
        search = band_search(settings.search, f_align)
        averager = FourierAverager(n_box, 2, settings.search.symmetry, dev)
        srefs = [SearchReference(refs[h], coverage=covs[h], mask=mask, pad=search.pad) for h in (0, 1)]
        poses = align_halves(source, tilt, halves, srefs, search, settings, averager)
        failed, scores = poses.failed, poses.scores
        if int((~failed).sum()) == 0:
            raise CryomineError("every particle failed to align; check the particles, the reference and the mask.")
        half_maps = averager.volumes(settings.guard_fraction)  # symmetrised while accumulating
        if it == 1:  # after the common start only: later the halves stay independent (gold standard)
            moved = _register_halves(source, tilt, halves, poses, half_maps, averager, search, settings, mask)
            if moved is not None:
                half_maps = averager.volumes(settings.guard_fraction)
        curve, freqs, r143, r05 = half_map_fsc(half_maps, voxel_size, mask)
        last = fsc_band(curve)
        f_res = last / n_box  # band supported by the FSC (beyond one-shell dips at CTF zeros)
        for h in (0, 1):
            if settings.lowpass_to_fsc:
                refs[h] = band_limit(fsc_weighted(half_maps[h], curve, last), f_cap)
            else:
                refs[h] = band_limit(half_maps[h], f_align)
        covs = list(averager.coverage(settings.guard_fraction))
        entry = {"iteration": it, "resolution_0143_A": r143, "resolution_05_A": r05,
                 "band_cycles_per_voxel": round(f_align, 4), "band_angstrom": voxel_size / f_align,
                 "mean_score": float(scores[~failed].mean()), "n_failed": int(failed.sum()),
                 "seconds": time.perf_counter() - ti}
        history.append(entry)
        log.info("iteration %d/%d: FSC 0.143 %.1f Å, 0.5 %.1f Å; band %.1f Å; mean score %.4f; failed %d; %.1f s",
                 it, settings.iterations, r143, r05, entry["band_angstrom"], entry["mean_score"], entry["n_failed"],
                 entry["seconds"])
        f_align = min(max(f_res + 1.0 / n_box, 0.1), f_cap)
        result_fsc = (curve, freqs, r143, r05)
        merged = averager.merged((0, 1), settings.guard_fraction)
        if checkpoint is not None and it < settings.iterations and distributed.is_writer():
            state = {"ref1": refs[0], "ref2": refs[1], "f_align": f_align, "rot": poses.rotations,
                     "shifts": poses.shifts, "scores": scores, "failed": failed, "halves": halves, "history": history}
            state.update({f"cov{h + 1}": covs[h] for h in (0, 1) if covs[h] is not None})
            save_checkpoint(checkpoint, CHECKPOINT_JOB, fingerprint, it, state)
    failed = poses.failed
    if bool(failed.any()):
        log.warning("%d of %d particles failed to align (flagged in the table, left out of the averages): rows %s",
                    int(failed.sum()), b, (failed.nonzero().flatten()[:10] + 1).tolist())
    log.info("refinement done in %.1f s", time.perf_counter() - t0)
    curve, freqs, r143, r05 = result_fsc
    shared = voxel_size / f_shared
    meaningful = bool(r143 < 0.95 * shared)
    if not meaningful:
        log.warning("the half maps agree only up to %.1f Å (FSC 0.143), no finer than the %.1f Å they share by "
                    "construction (common start and first-iteration registration): no meaningful resolution; the "
                    "average may be noise or the reference's image", r143, shared)
    return RefineResult(poses.rotations, poses.shifts, poses.scores, failed, halves, merged, half_maps,
                        curve, freqs, r143, r05, history, mask, shared, meaningful)
