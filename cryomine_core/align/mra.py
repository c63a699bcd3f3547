"""Multi-reference alignment: classification by alignment against K references.

1. **Common frame**: without given references, a reference-free start (:mod:`.refine`) is built
   from all particles and every particle is aligned to it.
2. **Seeding**: particles are brought into that frame (their transforms, with their wedges,
   interpolated at ``R u``, low band) and seeded into K groups by k-means++ on the constrained
   correlation (1 - CC as the distance), followed by a few k-means rounds with wedge-compensated
   centres. This separates structures before any re-alignment.
3. **Iterations**: every particle is aligned to all K references at once (the search scores all
   references in the same matrix products, :mod:`.search`), assigned to the best one, and each
   class is re-averaged with wedge compensation. A class left with fewer than 2 particles is
   re-seeded with the worst-fitting particles of the largest class (logged).

An iteration reads only the references and the band of the previous one, so the checkpoint after
each iteration (:mod:`.checkpoint`: references, band, history) lets ``--resume`` continue an
interrupted run to the uninterrupted run's result.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cryomine_core import distributed
from cryomine_core.align import jobs
from cryomine_core.align.average import FourierAverager
from cryomine_core.align.checkpoint import particles_digest, resume_state, save_checkpoint
from cryomine_core.align.defaults import DEFAULT_ANGULAR_STEP, DEFAULT_CHUNK, DEFAULT_ITERATIONS, DEFAULT_MAX_SHIFT
from cryomine_core.align.particle_source import ParticleSource, as_source
from cryomine_core.align.reference import SearchReference
from cryomine_core.align.refine import (
    Poses,
    RefineSettings,
    band_limit,
    band_search,
    batch_chunk,
    half_map_fsc,
    reference_free_start,
    run_fingerprint,
)
from cryomine_core.align.scoring import soft_sphere_mask
from cryomine_core.align.search import align_particles
from cryomine_core.align.spectra import PaddedSpectrum, half_sphere_points
from cryomine_core.errors import CryomineError
from cryomine_core.fourier.wedge import wedge_at

__all__ = ["MRAResult", "multi_reference_alignment", "run_mra_job"]

log = logging.getLogger("cryomine")

CHECKPOINT_JOB = "cryomine align mra"
#: checkpoint file of ``align mra`` in its output folder (removed once the results are written)
MRA_CHECKPOINT = "checkpoint.pt"


@dataclass
class MRAResult:
    """Output of :func:`multi_reference_alignment` (``B`` particles, ``K`` classes, box ``N``).

    Attributes:
        classes: ``(B,)`` 0-based class of each particle.
        rotations, shifts, scores, failed: final poses and scores against the assigned class.
        averages: ``(K, N, N, N)`` class averages.
        sizes: ``(K,)`` particles per class (failed ones excluded).
        resolutions: per class ``(res_0143, res_05)`` in Å from the FSC of the class's two half
            sets (not gold-standard: the halves share the references), NaN for tiny classes.
        history: one dict per iteration.
    """

    classes: torch.Tensor
    rotations: torch.Tensor
    shifts: torch.Tensor
    scores: torch.Tensor
    failed: torch.Tensor
    averages: torch.Tensor
    sizes: list
    resolutions: list
    history: list = field(default_factory=list)


def _batch_features(spec: PaddedSpectrum, tilt, rot, shifts, k) -> tuple[torch.Tensor, torch.Tensor]:
    """Transforms of a batch of particles in the common frame at points ``k (K, 3)``:
    ``(values (b, K) complex, observed (b, K))``; ``spec`` holds the batch's padded transforms."""
    kk = k[None] @ rot.transpose(-1, -2)  # rows of R u
    v = spec.sample(kk)
    ph = torch.polar(torch.ones(1, device=v.device), 2.0 * math.pi * (kk @ shifts[:, :, None])[..., 0])
    return v * ph, wedge_at(kk, tilt[:, 0], tilt[:, 1])


def _batches(source: ParticleSource, settings: RefineSettings, pad: int, rows: np.ndarray | None = None):
    """``(rows (b,), volumes, padded transforms)`` of this process's share of ``rows`` (default all),
    read ``settings.chunk`` at a time and transformed ``settings.batch_size`` at a time; the batches
    are the same whatever the chunk size and the number of processes (:func:`refine.half_rows`)."""
    rows = np.arange(source.n) if rows is None else np.asarray(rows)
    mine = rows[distributed.share(rows.size, settings.batch_size)]
    for chunk_rows, vols in source.chunks(batch_chunk(settings), mine):
        for i in range(0, chunk_rows.numel(), settings.batch_size):
            v = vols[i:i + settings.batch_size]
            yield chunk_rows[i:i + settings.batch_size], v, PaddedSpectrum(v, pad=pad)


def _cc_to_centres(x, wx, c, wc, w):
    """Constrained correlation ``(B, K)`` of features ``x (B, Q)`` (observed ``wx``) with centres ``c (K, Q)``."""
    a = torch.cat([(w * wx * x).real, (w * wx * x).imag], -1)
    bmat = torch.cat([(wc * c).real, (wc * c).imag], -1)
    num = a @ bmat.T
    den_x = (w * wx * x.abs().square()) @ wc.T
    den_c = (w * wx) @ (wc * c.abs().square()).T
    return num / torch.sqrt((den_x * den_c).clamp_min(1e-30))


def _centres(x, wx, labels, n_classes, old_c=None, old_w=None):
    """Wedge-compensated centres ``(K, Q)`` and their coverage of features ``x (B, Q)`` grouped by ``labels``;
    an empty group keeps its old centre (``old_c``, ``old_w``)."""
    new_c, new_w = [], []
    for k in range(n_classes):
        sel = labels == k
        if int(sel.sum()) == 0:
            new_c.append(old_c[k] if old_c is not None else x.new_zeros(x.shape[1:]))
            new_w.append(old_w[k] if old_w is not None else wx.new_zeros(wx.shape[1:]))
            continue
        num = (wx[sel] * x[sel]).sum(0)
        den = wx[sel].sum(0)
        new_c.append(num / den.clamp_min(1.0))
        new_w.append((den / max(1.0, 0.1 * float(sel.sum()))).clamp(0, 1))
    return torch.stack(new_c), torch.stack(new_w)


def _kmeans_once(x, wx, w, n_classes, rng, rounds):
    """One k-means++ seeding and up to ``rounds`` k-means rounds; returns ``(labels (B,), objective)``."""
    b = x.shape[0]
    first = int(rng.integers(b))
    centres, cov = x[first:first + 1].clone(), wx[first:first + 1].clone()
    for _ in range(1, n_classes):
        d = (1.0 - _cc_to_centres(x, wx, centres, cov, w).amax(1)).clamp_min(0).cpu().double().numpy()
        p = d / d.sum() if d.sum() > 0 else np.full(b, 1.0 / b)
        j = int(rng.choice(b, p=p))
        centres = torch.cat([centres, x[j:j + 1]])
        cov = torch.cat([cov, wx[j:j + 1]])
    cc = _cc_to_centres(x, wx, centres, cov, w)
    labels = cc.argmax(1)
    for _ in range(rounds):
        centres, cov = _centres(x, wx, labels, n_classes, centres, cov)
        cc = _cc_to_centres(x, wx, centres, cov, w)
        new_labels = cc.argmax(1)
        if bool((new_labels == labels).all()):
            break
        labels = new_labels
    # objective: how well each particle matches its own centre, leaving itself out of the centre
    # would be fairer; with equal-size restarts the plain mean ranks partitions well enough
    return labels, float(cc.amax(1).mean())


def _kmeans_seed(x, wx, w, n_classes, rng, rounds=8, restarts=8):
    """Best of ``restarts`` k-means++ runs on the constrained correlation (highest mean CC to own centre)."""
    best_labels, best_obj = None, -float("inf")
    for _ in range(restarts):
        labels, obj = _kmeans_once(x, wx, w, n_classes, rng, rounds)
        if torch.bincount(labels, minlength=n_classes).min() == 0:
            continue
        if obj > best_obj:
            best_labels, best_obj = labels, obj
    if best_labels is None:
        best_labels, _ = _kmeans_once(x, wx, w, n_classes, rng, rounds)
    return best_labels


def _fix_small_classes(classes, scores, n_classes):
    """Re-seed classes with < 2 members from the worst-scoring members of the largest class."""
    for k in range(n_classes):
        if int((classes == k).sum()) >= 2:
            continue
        sizes = torch.bincount(classes, minlength=n_classes)
        big = int(sizes.argmax())
        members = (classes == big).nonzero().flatten()
        if members.numel() < 4:
            continue
        worst = members[scores[members].argsort()[: max(2, members.numel() // 4)]]
        classes[worst] = k
        log.warning("class %d had fewer than 2 particles; re-seeded with %d poorly fitting particles of class %d",
                    k + 1, worst.numel(), big + 1)
    return classes


#: k-means seeds the classes on at most this many particles (drawn with the seed); the others are then
#: given the class of the nearest centre, so memory does not grow with the set beyond poses and classes
SEED_SUBSET = 20_000


def _align_pass(source: ParticleSource, tilt, sref: SearchReference, search, settings: RefineSettings, halves,
                averager: FourierAverager | None, on_batch=None) -> tuple[Poses, torch.Tensor]:
    """Align this process's share of the particles (streamed) to every reference of ``sref``; add each
    one to the accumulator ``2 * best reference + half - 1`` of ``averager`` (when given) and call
    ``on_batch(rows, spectrum, result)``. Sums, poses and best references are added over the processes.
    Returns ``(poses, best reference (B,) long)``."""
    poses = Poses.zeros(source.n, tilt.device)
    best = torch.zeros(source.n, device=tilt.device)
    cache: dict = {}
    for rows, vols, spec in _batches(source, settings, search.pad):
        res = align_particles(vols, tilt[rows], sref, search, batch_size=settings.batch_size, spectra=[spec],
                              ref_cache=cache)
        poses.rotations[rows], poses.shifts[rows], poses.scores[rows], poses.failed[rows] = (
            res.rotations, res.shifts, res.scores, res.failed)
        best[rows] = res.reference_index.float()
        if averager is not None:
            averager.add(spec, res.rotations, res.shifts, tilt[rows], 2 * res.reference_index + halves[rows] - 1,
                         ~res.failed)
        if on_batch is not None:
            on_batch(rows, spec, res)
    if averager is not None:
        distributed.sum_(averager.numerator, averager.weight, averager.count)
    distributed.sum_(best)
    poses.gather()
    return poses, best.round().long()


@dataclass
class ReferencePoses:
    """Each particle's pose against each reference: rotations ``(B, K, 3, 3)``, shifts ``(B, K, 3)`` voxels,
    scores ``(B, K)`` (-1 where the search failed)."""

    rotations: torch.Tensor
    shifts: torch.Tensor
    scores: torch.Tensor


def _align_pass_per_reference(source: ParticleSource, tilt, refs: torch.Tensor, mask, search, settings: RefineSettings,
                              halves, averager: FourierAverager, priors: ReferencePoses | None
                              ) -> tuple[Poses, torch.Tensor, ReferencePoses]:
    """Align this process's share of the particles (streamed) to each of the K references on its own:
    a global search, or with ``priors`` a local search within ``settings.local_radius_deg`` of the
    particle's pose for that reference in the previous round. Each particle goes to the reference it
    scores best against and is added to ``averager`` (accumulator ``2 * class + half - 1``).
    Returns ``(best poses, best reference (B,), every reference's poses)``, added over the processes."""
    b, k, dev = source.n, refs.shape[0], tilt.device
    every = ReferencePoses(torch.zeros((b, k, 3, 3), device=dev), torch.zeros((b, k, 3), device=dev),
                           torch.zeros((b, k), device=dev))
    poses = Poses.zeros(b, dev)
    best = torch.zeros(b, device=dev)
    srefs = [SearchReference(refs[j:j + 1], mask=mask, pad=search.pad) for j in range(k)]
    local = replace(search, local_only_radius_deg=float(settings.local_radius_deg)) if priors is not None else search
    caches: list[dict] = [{} for _ in range(k)]
    for rows, vols, spec in _batches(source, settings, search.pad):
        for j in range(k):
            res = align_particles(vols, tilt[rows], srefs[j], local, batch_size=settings.batch_size, spectra=[spec],
                                  ref_cache=caches[j],
                                  prior_rotations=None if priors is None else priors.rotations[rows, j],
                                  prior_shifts=None if priors is None else priors.shifts[rows, j])
            every.rotations[rows, j], every.shifts[rows, j] = res.rotations, res.shifts
            every.scores[rows, j] = torch.where(res.failed, torch.full_like(res.scores, -1.0), res.scores)
        top = every.scores[rows].argmax(1)
        pick = torch.arange(rows.numel(), device=dev)
        poses.rotations[rows] = every.rotations[rows][pick, top]
        poses.shifts[rows] = every.shifts[rows][pick, top]
        poses.scores[rows] = every.scores[rows][pick, top]
        poses.failed[rows] = every.scores[rows][pick, top] <= 0
        best[rows] = top.float()
        averager.add(spec, poses.rotations[rows], poses.shifts[rows], tilt[rows], 2 * top + halves[rows] - 1,
                     ~poses.failed[rows])
    distributed.sum_(averager.numerator, averager.weight, averager.count, best, every.rotations, every.shifts,
                     every.scores)
    poses.gather()
    return poses, best.round().long(), every


def _average_pass(source: ParticleSource, tilt, poses: Poses, classes, halves, settings: RefineSettings, pad: int,
                  n_classes: int) -> FourierAverager:
    """Per class and half set (accumulator ``2 * class + half - 1``), the streamed average of the posed particles."""
    averager = FourierAverager(source.box, 2 * n_classes, settings.search.symmetry, tilt.device)
    for rows, _, spec in _batches(source, settings, pad):
        averager.add(spec, poses.rotations[rows], poses.shifts[rows], tilt[rows], 2 * classes[rows] + halves[rows] - 1,
                     ~poses.failed[rows])
    distributed.sum_(averager.numerator, averager.weight, averager.count)
    return averager


def _class_volumes(averager: FourierAverager, n_classes: int, guard: float) -> torch.Tensor:
    """Class averages ``(K, N, N, N)`` from the per-half accumulators (both halves together)."""
    return torch.stack([averager.merged((2 * k, 2 * k + 1), guard) if int(averager.count[2 * k:2 * k + 2].sum())
                        else torch.zeros((averager.box,) * 3, device=averager.device) for k in range(n_classes)])


def _seed_classes(source: ParticleSource, tilt, start, cov, mask, search, settings: RefineSettings, halves,
                  n_classes: int, rng: np.random.Generator) -> tuple[Poses, torch.Tensor]:
    """Align every particle to the common start, seed K classes by k-means on the aligned transforms
    (at most :data:`SEED_SUBSET` particles; the others join the nearest centre), return ``(poses, classes)``."""
    b, n_box, dev = source.n, source.box, tilt.device
    subset = np.arange(b) if b <= SEED_SUBSET else np.sort(rng.choice(b, SEED_SUBSET, replace=False))
    position = np.full(b, -1)
    position[subset] = np.arange(subset.size)
    k_pts, w = half_sphere_points(n_box, search.f_max, 0.0, device=dev)
    x = torch.zeros((subset.size, k_pts.shape[0]), dtype=torch.complex64, device=dev)
    wx = torch.zeros((subset.size, k_pts.shape[0]), device=dev)

    def keep_features(rows, spec, res):
        pos = torch.as_tensor(position[rows.cpu().numpy()], device=dev)
        inside = pos >= 0
        if bool(inside.any()):
            v, o = _batch_features(spec, tilt[rows], res.rotations, res.shifts, k_pts)
            x[pos[inside]], wx[pos[inside]] = v[inside], o[inside]

    poses, _ = _align_pass(source, tilt, SearchReference(start, coverage=cov, mask=mask), search, settings, halves,
                           None, keep_features)
    distributed.sum_(x, wx)
    labels = _kmeans_seed(x, wx, w, n_classes, rng)
    distributed.broadcast_(labels)
    classes = torch.zeros(b, dtype=torch.long, device=dev)
    classes[torch.as_tensor(subset, device=dev)] = labels
    if subset.size < b:  # the rest: nearest centre, in the same streamed way
        centres, centre_cov = _centres(x, wx, labels, n_classes)
        others = np.setdiff1d(np.arange(b), subset)
        assigned = torch.zeros(b, device=dev)
        for rows, _, spec in _batches(source, settings, search.pad, others):
            v, o = _batch_features(spec, tilt[rows], poses.rotations[rows], poses.shifts[rows], k_pts)
            assigned[rows] = _cc_to_centres(v, o, centres, centre_cov, w).argmax(1).float()
        distributed.sum_(assigned)
        rest = torch.as_tensor(others, device=dev)
        classes[rest] = assigned[rest].round().long()
        log.info("MRA seeding: k-means on %d of %d particles, the others joined the nearest centre", subset.size, b)
    return poses, classes


def multi_reference_alignment(particles: torch.Tensor | ParticleSource, tilt_ranges: torch.Tensor, voxel_size: float,
                              n_classes: int, settings: RefineSettings | None = None,
                              references: torch.Tensor | None = None, half_sets: torch.Tensor | None = None,
                              checkpoint=None, resume: bool = False) -> MRAResult:
    """Classify and align particles ``(B, N, N, N)`` against ``n_classes`` references.

    Args:
        particles, tilt_ranges, voxel_size: as for :func:`~cryomine_core.align.refine.refine` (a tensor
            or a :class:`ParticleSource`, read ``settings.chunk`` at a time in every pass).
        n_classes: K >= 1.
        settings: iterations, search, band, mask, seed (:class:`~cryomine_core.align.refine.RefineSettings`).
        references: optional ``(K, N, N, N)`` starting references (low-passed to ``initial_f``).
        half_sets: optional ``(B,)`` 1/2 split for the per-class FSC (default random).
        checkpoint: file for the state after each iteration but the last; None: none kept.
        resume: continue from ``checkpoint`` (same inputs and settings; more ``iterations`` may be
            asked for) to the uninterrupted run's result.

    Under ``torchrun`` each process aligns its share; the class sums, poses and classes are added over
    the processes (k-means seeding is rank 0's), so every process holds the one result.
    """
    settings = settings or RefineSettings()
    source = as_source(particles)
    b, n_box = source.n, source.box
    dev = source.device
    if n_classes < 1:
        raise CryomineError(f"--classes {n_classes} is invalid: give at least 1.")
    if b < 2 * n_classes:
        raise CryomineError(f"{b} particles are too few for {n_classes} classes; give at least 2 per class.")
    settings.search.validate(n_box)
    if settings.chunk < 1:
        raise CryomineError(f"--chunk {settings.chunk}: give at least 1 subtomogram per chunk.")
    rng = np.random.default_rng(settings.seed)
    tilt = tilt_ranges.to(dev, torch.float32)
    mask = settings.mask if settings.mask is not None else soft_sphere_mask(n_box, device=dev)
    halves = half_sets.to(dev).long() if half_sets is not None else \
        torch.as_tensor(rng.permutation(np.arange(b) % 2) + 1, device=dev)
    f_cap = 0.45 if settings.lowpass_angstrom is None else min(0.45, voxel_size / settings.lowpass_angstrom)
    f0 = min(settings.initial_f, f_cap)
    f_align = min(max(f0 * 1.5, 0.15), f_cap)
    history = []
    fingerprint = None
    if checkpoint is not None:
        fingerprint = run_fingerprint(source, tilt, voxel_size, None, settings, half_sets)
        fingerprint.update({"n_classes": int(n_classes),
                            "references": None if references is None else particles_digest(references)})
    done = 0
    if resume:
        done, st = resume_state(checkpoint, CHECKPOINT_JOB, fingerprint, settings.iterations, dev)
        refs, f_align, history = st["refs"], float(st["f_align"]), list(st["history"])
        log.info("resuming from %s after MRA iteration %d of %d", checkpoint, done, settings.iterations)
    elif references is None:
        start, cov = reference_free_start(source, tilt, settings, rng)
        search = band_search(settings.search, f_align)
        poses, classes = _seed_classes(source, tilt, start, cov, mask, search, settings, halves, n_classes, rng)
        avg = _average_pass(source, tilt, poses, classes, halves, settings, search.pad, n_classes)
        refs = torch.stack([band_limit(v, f_align) for v in _class_volumes(avg, n_classes, settings.guard_fraction)])
        log.info("MRA seeding: class sizes %s", torch.bincount(classes, minlength=n_classes).tolist())
    else:
        if references.shape[0] != n_classes:
            raise CryomineError(f"{references.shape[0]} references given for {n_classes} classes.")
        refs = torch.stack([band_limit(r.to(dev).float(), f0) for r in references])
    poses = None
    every = None if not resume else st.get("every")
    if every is not None:
        every = ReferencePoses(every["rotations"], every["shifts"], every["scores"])
    for it in range(done + 1, settings.iterations + 1):
        ti = time.perf_counter()
        search = band_search(settings.search, f_align)
        avg = FourierAverager(n_box, 2 * n_classes, settings.search.symmetry, dev)
        if settings.local_radius_deg is None:
            poses, best = _align_pass(source, tilt, SearchReference(refs, mask=mask, pad=search.pad), search,
                                      settings, halves, avg)
        else:
            poses, best, every = _align_pass_per_reference(source, tilt, refs, mask, search, settings, halves, avg,
                                                           every)
        classes = _fix_small_classes(best.clone(), poses.scores, n_classes)
        if not bool((classes == best).all()):  # particles moved after they were summed: sum them again
            avg = _average_pass(source, tilt, poses, classes, halves, settings, search.pad, n_classes)
        vols = _class_volumes(avg, n_classes, settings.guard_fraction)
        refs = torch.stack([band_limit(v, f_align) for v in vols])
        sizes = torch.bincount(classes[~poses.failed], minlength=n_classes).tolist()
        entry = {"iteration": it, "class_sizes": sizes, "mean_score": float(poses.scores[~poses.failed].mean()),
                 "n_failed": int(poses.failed.sum()), "band_angstrom": voxel_size / f_align,
                 "seconds": time.perf_counter() - ti}
        history.append(entry)
        log.info("MRA iteration %d/%d: class sizes %s, mean score %.4f, failed %d, %.1f s", it, settings.iterations,
                 sizes, entry["mean_score"], entry["n_failed"], entry["seconds"])
        f_align = min(f_align + 1.0 / n_box, f_cap)
        if checkpoint is not None and it < settings.iterations and distributed.is_writer():
            state = {"refs": refs, "f_align": f_align, "history": history}
            if every is not None:  # the next round searches locally around these
                state["every"] = {"rotations": every.rotations.cpu(), "shifts": every.shifts.cpu(),
                                  "scores": every.scores.cpu()}
            save_checkpoint(checkpoint, CHECKPOINT_JOB, fingerprint, it, state)
    resolutions = []
    half_vols = avg.volumes(settings.guard_fraction)
    for k in range(n_classes):
        if int(avg.count[2 * k]) < 1 or int(avg.count[2 * k + 1]) < 1:
            resolutions.append((float("nan"), float("nan")))
            continue
        _, _, r143, r05 = half_map_fsc(half_vols[2 * k:2 * k + 2], voxel_size, mask)
        resolutions.append((r143, r05))
    sizes = torch.bincount(classes[~poses.failed], minlength=n_classes).tolist()
    return MRAResult(classes, poses.rotations, poses.shifts, poses.scores, poses.failed, vols, sizes,
                     resolutions, history)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def run_mra_job(table, out_dir, *, classes: int, reference=None, mask=None, symmetry="C1",
                iterations=DEFAULT_ITERATIONS, angular_step=DEFAULT_ANGULAR_STEP, max_shift=DEFAULT_MAX_SHIFT,
                lowpass_angstrom=None, tilt_range=None, device="auto", seed=0, invert_reference=False,
                contrast="check", resume=False, chunk=DEFAULT_CHUNK) -> dict:
    """File-level MRA: writes ``particles.star`` (``rlnClassNumber`` 1..K, poses, ``cmScore``,
    ``cmAlignFailed``), ``class_001.mrc`` ..., ``metrics.json`` and ``gallery.png``.

    The state after each iteration is kept in ``out_dir/checkpoint.pt`` until the results are
    written; ``resume`` continues from it (same inputs and settings) to the uninterrupted result.

    ``reference``: optional MRC used as the common start (low-passed); the K classes are seeded
    from the data. It is multiplied by -1 with ``invert_reference`` and checked against the
    particles' contrast first (:func:`~cryomine_core.align.jobs.prepare_reference`; ``contrast``:
    check, auto or off); the outcome is ``contrast_check`` in the metrics (None without a reference).

    The subtomograms are streamed from disk, ``chunk`` at a time in every pass (only poses, scores
    and classes are kept per particle). Under ``torchrun`` each process aligns its share and rank 0
    writes the one result.
    """
    from cryomine_core.align.report import plot_gallery
    from cryomine_core.device import select_device
    from cryomine_core.io.atomic import atomic_write_text
    from cryomine_core.io.mrc import write_mrc
    from cryomine_core.io.outputs import remove_stale

    t0 = time.perf_counter()
    jobs.check_reference_options(reference, invert_reference, contrast)
    if int(chunk) < 1:
        raise CryomineError(f"--chunk {chunk}: give at least 1 subtomogram per chunk.")
    dev = select_device(device)
    distributed.setup(dev)
    ps = jobs.load_particles(table, tilt_range, dev, read_volumes=False)
    search = jobs.search_settings(angular_step, max_shift, symmetry, ps.box)
    msk = jobs.check_mask(jobs.load_volume(mask, ps.box, ps.voxel_size, "mask", dev), mask) if mask else None
    settings = RefineSettings(iterations=int(iterations), search=search, lowpass_angstrom=lowpass_angstrom, mask=msk,
                              seed=int(seed), chunk=int(chunk))
    refs, contrast_record = None, None
    if reference:
        ref = jobs.load_volume(reference, ps.box, ps.voxel_size, "reference", dev)
        ref, contrast_record = jobs.prepare_reference(ref, reference, ps, search, msk,
                                                      invert_reference=invert_reference, contrast=contrast,
                                                      lowpass_angstrom=lowpass_angstrom, seed=seed)
        refs = ref.expand(int(classes), *ref.shape).clone()
        refs = refs + 0.05 * ref.std() * torch.randn(refs.shape, generator=torch.Generator().manual_seed(seed)).to(dev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / MRA_CHECKPOINT
    res = multi_reference_alignment(ps.as_source(), ps.tilt, ps.voxel_size, int(classes), settings, refs,
                                    checkpoint=checkpoint, resume=resume)
    if not distributed.is_writer():
        return {"command": "align mra", "processes": distributed.world_size()}  # rank 0 writes the one result
    jobs.write_aligned_table(out, ps.table, res.rotations, res.shifts, ps.voxel_size, res.scores, res.failed,
                             classes=res.classes + 1)
    for k in range(int(classes)):
        write_mrc(out / f"class_{k + 1:03d}.mrc", res.averages[k].cpu().numpy(), ps.voxel_size)
    remove_stale(out, "class_*.mrc", [f"class_{k + 1:03d}.mrc" for k in range(int(classes))])
    metrics = {
        "command": "align mra", "n_particles": len(ps.table), "n_classes": int(classes),
        "n_failed": int(res.failed.sum()), "failed_rows": (res.failed.nonzero().flatten() + 1).tolist(),
        "class_sizes": {str(k + 1): int(s) for k, s in enumerate(res.sizes)},
        "class_resolution_0143_A": {str(k + 1): _finite(r[0]) for k, r in enumerate(res.resolutions)},
        "class_resolution_05_A": {str(k + 1): _finite(r[1]) for k, r in enumerate(res.resolutions)},
        "class_files": [f"class_{k + 1:03d}.mrc" for k in range(int(classes))],
        "history": res.history, "box": ps.box, "voxel_size_A": ps.voxel_size, "symmetry": symmetry,
        "iterations": int(iterations), "angular_step_deg": float(angular_step), "max_shift_voxels": float(max_shift),
        "reference": str(reference) if reference else None, "contrast_check": contrast_record,
        "seed": int(seed), "chunk": int(chunk), "processes": distributed.world_size(), "device": str(dev),
        "seconds": time.perf_counter() - t0,
        "resolution_note": "per-class FSC between the class's two half sets; not gold-standard (shared references)",
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    plot_gallery(out / "gallery.png", [v.cpu().numpy() for v in res.averages],
                 [f"class {k + 1} ({s})" for k, s in enumerate(res.sizes)])
    checkpoint.unlink(missing_ok=True)  # the results are written: nothing left to resume
    log.info("wrote %s: class sizes %s", out, res.sizes)
    return metrics
