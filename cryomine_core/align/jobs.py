"""File-level entry points behind ``cryomine align``: read a particle table, run, write the results.

Every job reads the particle table (:mod:`cryomine_core.io.table`) and its MRC subtomograms,
checks them (one cubic box and voxel size, finite values, a tilt range per item, a matching
reference and mask), runs on the requested device and writes into ``out_dir`` atomically:
``particles.star`` (poses in RELION angles/origins, ``cmScore``, ``cmAlignFailed``, half sets),
MRC volumes, ``metrics.json`` and PNG figures. Failed alignments are flagged in the table
(``cmAlignFailed = 1``), counted in the metrics and logged; they are left out of the averages.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryomine_core import distributed
from cryomine_core.align.average import FourierAverager
from cryomine_core.align.contrast import AGREE, CHECK_BAND, OPPOSITE, check_contrast
from cryomine_core.align.defaults import DEFAULT_ANGULAR_STEP, DEFAULT_CHUNK, DEFAULT_ITERATIONS, DEFAULT_MAX_SHIFT
from cryomine_core.align.particle_source import InMemoryParticles, ParticleFiles, ParticleSource
from cryomine_core.align.refine import RefineResult, RefineSettings, half_map_fsc, refine
from cryomine_core.align.report import plot_fsc, plot_gallery, plot_orientations, plot_slices
from cryomine_core.align.scoring import soft_sphere_mask
from cryomine_core.align.search import SearchSettings
from cryomine_core.align.spectra import PaddedSpectrum
from cryomine_core.device import select_device
from cryomine_core.errors import CryomineError, InputFileError, TableError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.columns import ALIGN_FAILED as FAILED
from cryomine_core.io.columns import RANDOM_SUBSET
from cryomine_core.io.mrc import read_mrc, write_mrc
from cryomine_core.io.outputs import remove_stale
from cryomine_core.io.poses import table_poses, with_poses
from cryomine_core.subtomograms import load_subtomograms
from cryomine_core.tilt_range import RULE, invalid_tilt_ranges
from cryomine_core.validate import check_subtomograms

__all__ = ["ParticleSet", "load_particles", "load_volume", "prepare_reference", "run_refine", "run_average",
           "check_mask", "search_settings", "write_aligned_table", "FAILED", "RANDOM_SUBSET", "CONTRAST_MODES"]

log = logging.getLogger("cryomine")
#: subtomograms transformed together when added to the averages
AVERAGE_BATCH = 32

CONTRAST_MODES = ("check", "auto", "off")
"""``--contrast``: refuse an opposite-contrast reference (check), invert it (auto), or skip the check (off)."""


@dataclass
class ParticleSet:
    """Particles read from a table: ``volumes (B, N, N, N)`` normalised (None when the caller streams
    them, :meth:`as_source`), ``tilt (B, 2)`` degrees, the box edge ``box``."""

    table: pd.DataFrame
    volumes: torch.Tensor | None
    tilt: torch.Tensor
    voxel_size: float
    source: str
    box: int

    def as_source(self) -> ParticleSource:
        """The particles for :func:`refine` and the contrast check: the volumes in memory when they were
        read, else the table's files, read when needed (:mod:`.particle_source`)."""
        if self.volumes is not None:
            return InMemoryParticles(self.volumes)
        return ParticleFiles(list(self.table[T.IMAGE]), self.box, self.tilt.device)


def load_particles(table_path: str | Path, tilt_range: tuple[float, float] | None = None, device=None,
                   read_volumes: bool = True) -> ParticleSet:
    """Read and check a particle table and its subtomograms.

    Args:
        table_path: particle table (STAR).
        tilt_range: ``(min, max)`` degrees applied to every particle; required when the table has
            no ``cmTiltMin``/``cmTiltMax`` columns (CryoMine never guesses a missing wedge).
        device: where the volumes go.
        read_volumes: read every volume now (``volumes``); False checks the headers only and
            leaves the volumes to :meth:`ParticleSet.as_source` (read a chunk at a time).

    Raises:
        CryomineError (TableError, InputFileError): empty table, missing tilt range, unreadable or
        non-finite volume, mixed box or voxel sizes, constant volume. Messages name the item.
    """
    source = str(table_path)
    df = T.read_table(table_path, require=(T.IMAGE,))
    if tilt_range is not None:
        lo, hi = float(tilt_range[0]), float(tilt_range[1])
        if invalid_tilt_ranges(lo, hi).size:
            raise CryomineError(f"--tilt-range {lo:g} {hi:g} is invalid: give {RULE}.")
        if T.TILT_MIN in df.columns:
            log.warning("--tilt-range %g %g replaces the table's own tilt ranges for all %d particles", lo, hi,
                        len(df))
        df[T.TILT_MIN], df[T.TILT_MAX] = lo, hi
    tilt = T.tilt_ranges(df, source=source)
    info = check_subtomograms(df)  # readable headers, one box, one voxel size that table and headers agree on
    box, voxel_size = info["box"][0], info["voxel_size"]
    if T.VOXEL_SIZE not in df.columns:
        df[T.VOXEL_SIZE] = voxel_size
        log.info("%s: no cmVoxelSize column; using the MRC headers' %.4g Å", source, voxel_size)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    volumes = load_subtomograms(list(df[T.IMAGE]), device=dev) if read_volumes else None
    log.info("%s %d particles of %d^3 voxels at %.4g Å from %s", "read" if read_volumes else "checked", len(df), box,
             voxel_size, source)
    return ParticleSet(df, volumes, torch.as_tensor(tilt, dtype=torch.float32, device=dev), voxel_size, source,
                       int(box))


def load_volume(path: str | Path, box: int, voxel_size: float, what: str, device=None) -> torch.Tensor:
    """Read a reference or mask and check it matches the particles' box and voxel size."""
    data, vs = read_mrc(path)
    if data.ndim != 3 or data.shape != (box, box, box):
        raise InputFileError(f"{path}: the {what} has shape {data.shape} but the particles are {box}^3; give a "
                             f"{what} in the particle box (resample or pad/crop it to {box}^3).")
    if abs(vs - voxel_size) > 1e-3 * voxel_size:
        raise InputFileError(f"{path}: the {what} has voxel size {vs:g} Å but the particles have {voxel_size:g} Å; "
                             f"resample the {what} to {voxel_size:g} Å/voxel.")
    return torch.as_tensor(data, dtype=torch.float32, device=device)


def check_mask(mask: torch.Tensor, path) -> torch.Tensor:
    """Refuse a mask ``(N, N, N)`` read from ``path`` unless its values lie in [0, 1] with some above 0."""
    if float(mask.min()) < -1e-6 or float(mask.max()) > 1 + 1e-6 or float(mask.max()) <= 0:
        raise InputFileError(f"{path}: a mask must hold values in [0, 1] with some voxels > 0 (got range "
                             f"{float(mask.min()):g}..{float(mask.max()):g}).")
    return mask.clamp(0.0, 1.0)


def check_reference_options(reference, invert_reference: bool, contrast: str) -> None:
    """Refuse ``--invert-reference`` without ``--reference`` and an unknown ``--contrast`` mode."""
    if contrast not in CONTRAST_MODES:
        raise CryomineError(f"--contrast {contrast!r} is unknown; use one of {', '.join(CONTRAST_MODES)}.")
    if invert_reference and not reference:
        raise CryomineError("--invert-reference needs a --reference to invert; give one or drop the flag.")


def _opposite_contrast_message(path, invert_reference: bool, summary: str) -> str:
    if invert_reference:
        return (f"{path}: after --invert-reference the reference has the opposite contrast of the particles "
                f"({summary}); drop --invert-reference.")
    return (f"{path}: the reference has the opposite contrast of the particles ({summary}); pass "
            "--invert-reference (or --contrast auto to invert it automatically).")


def prepare_reference(ref: torch.Tensor, path, ps: ParticleSet, search: SearchSettings, mask: torch.Tensor | None, *,
                      invert_reference: bool = False, contrast: str = "check",
                      lowpass_angstrom: float | None = None, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Apply ``--invert-reference`` and the contrast check (:mod:`.contrast`) to a user reference ``(N, N, N)``.

    Returns ``(reference to use, record for metrics.json)``. The record holds the mode, whether the
    user inverted the reference, whether the check inverted it, the sign finally applied to the
    file's values, and the check's figures (verdict, median best scores, wins, p-value).

    Raises:
        CryomineError: the check finds the opposite contrast and ``contrast`` is ``check``.
    """
    check_reference_options(path, invert_reference, contrast)
    record = {"mode": contrast, "invert_reference": bool(invert_reference), "inverted_automatically": False}
    if invert_reference:
        ref = -ref
        log.info("--invert-reference: the reference %s is multiplied by -1", path)
    if contrast == "off":
        log.info("contrast check skipped (--contrast off)")
        record.update(verdict="skipped", reference_sign=-1 if invert_reference else 1)
        return ref, record
    band = CHECK_BAND if lowpass_angstrom is None else min(CHECK_BAND, ps.voxel_size / float(lowpass_angstrom))
    mask = mask if mask is not None else soft_sphere_mask(ps.box, device=ps.tilt.device)
    check = check_contrast(ps.as_source(), ps.tilt, ref, search, mask=mask, band=band, seed=seed)
    record.update(check.as_dict())
    if check.verdict == OPPOSITE and contrast == "check":
        raise CryomineError(_opposite_contrast_message(path, invert_reference, check.summary()))
    if check.verdict == OPPOSITE:
        ref = -ref
        record["inverted_automatically"] = True
        log.warning("contrast check: the reference has the opposite contrast of the particles (%s); inverted it "
                    "(--contrast auto)", check.summary())
    elif check.verdict == AGREE:
        log.info("contrast check: reference and particles agree (%s; %.1f s)", check.summary(), check.seconds)
    else:
        log.warning("contrast check inconclusive (%s): these particles cannot tell the reference's contrast; it is "
                    "used unchanged", check.summary())
    record["reference_sign"] = -1 if invert_reference != record["inverted_automatically"] else 1
    return ref, record


def search_settings(angular_step, max_shift, symmetry, box) -> SearchSettings:
    """The search settings of the command-line options (step in degrees, shift in voxels), checked for ``box``."""
    s = SearchSettings(angular_step_deg=float(angular_step), max_shift_voxels=float(max_shift), symmetry=symmetry)
    try:
        s.validate(box)
    except ValueError as exc:  # bad symmetry symbol
        raise CryomineError(f"--symmetry {symmetry!r}: {exc}") from exc
    return s


def write_aligned_table(out: Path, df: pd.DataFrame, rot, shifts, voxel_size, scores, failed, halves=None,
                        classes=None):
    """Write ``out/particles.star``: ``df`` with the poses ``rot (B, 3, 3)`` / ``shifts (B, 3)`` voxels, the
    scores, failure flags and, when given, half sets and (1-based) classes."""
    table = with_poses(df, rot.double().cpu(), shifts.double().cpu(), voxel_size)
    table[T.SCORE] = scores.cpu().numpy().astype(float)
    table[FAILED] = failed.cpu().numpy().astype(int)
    if halves is not None:
        table[T.HALF_SET] = halves.cpu().numpy().astype(int)
        table[RANDOM_SUBSET] = halves.cpu().numpy().astype(int)
    if classes is not None:
        table[T.CLASS] = classes.cpu().numpy().astype(int)
    T.write_table(out / "particles.star", table)


def _fsc_lists(curve, freqs) -> dict:
    return {"frequency_per_angstrom": [round(float(f), 6) for f in freqs.cpu()],
            "fsc": [round(float(c), 5) for c in curve.cpu()]}


def _write_metrics(out: Path, metrics: dict) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))


REFINE_CHECKPOINT = "checkpoint.pt"


def run_refine(table: str | Path, out_dir: str | Path, *, reference: str | Path | None = None,
               mask: str | Path | None = None, symmetry: str = "C1", iterations: int = DEFAULT_ITERATIONS,
               angular_step: float = DEFAULT_ANGULAR_STEP, max_shift: float = DEFAULT_MAX_SHIFT,
               lowpass_angstrom: float | None = None,
               tilt_range: tuple[float, float] | None = None, device: str = "auto", seed: int = 0,
               invert_reference: bool = False, contrast: str = "check", resume: bool = False,
               chunk: int = DEFAULT_CHUNK) -> dict:
    """``cryomine align refine``: gold-standard refinement (reference-free unless ``reference``).

    Writes ``particles.star``, ``average.mrc``, ``half1.mrc``, ``half2.mrc``, ``metrics.json``,
    ``fsc.png``, ``slices.png``, ``orientations.png`` into ``out_dir``; returns the metrics.
    The state after each iteration is kept in ``out_dir/checkpoint.pt`` until the results are
    written; ``resume`` continues from it (same inputs and settings) to the uninterrupted result.
    A given reference is multiplied by -1 with ``invert_reference`` and then checked against the
    particles' contrast (:func:`prepare_reference`; ``contrast``: check, auto or off); the outcome
    is ``contrast_check`` in the metrics (None without a reference).

    The subtomograms are streamed from disk, ``chunk`` at a time in every pass: only poses and
    scores are kept per particle, so memory depends on ``chunk`` and the box, not on the number of
    particles. Under ``torchrun`` each process aligns its share (:mod:`cryomine_core.distributed`),
    the half-map sums and poses are added over the processes and rank 0 writes the one result.
    """
    t0 = time.perf_counter()
    check_reference_options(reference, invert_reference, contrast)
    if int(chunk) < 1:
        raise CryomineError(f"--chunk {chunk}: give at least 1 subtomogram per chunk.")
    dev = select_device(device)
    distributed.setup(dev)
    ps = load_particles(table, tilt_range, dev, read_volumes=False)
    if len(ps.table) < 2:
        raise CryomineError(f"{ps.source}: refinement needs at least 2 particles (one per half set), got "
                            f"{len(ps.table)}.")
    search = search_settings(angular_step, max_shift, symmetry, ps.box)
    ref = load_volume(reference, ps.box, ps.voxel_size, "reference", dev) if reference else None
    msk = check_mask(load_volume(mask, ps.box, ps.voxel_size, "mask", dev), mask) if mask else None
    if lowpass_angstrom is not None and not lowpass_angstrom >= 2 * ps.voxel_size:
        raise CryomineError(f"--lowpass-angstrom {lowpass_angstrom} is finer than Nyquist ({2 * ps.voxel_size:g} Å); "
                            "give a larger value.")
    contrast_record = None
    if ref is not None:
        ref, contrast_record = prepare_reference(ref, reference, ps, search, msk, invert_reference=invert_reference,
                                                 contrast=contrast, lowpass_angstrom=lowpass_angstrom, seed=seed)
    halves = None
    if T.HALF_SET in ps.table.columns:
        halves = torch.as_tensor(ps.table[T.HALF_SET].to_numpy(int), device=dev)
        log.info("keeping the table's half sets (%s)", T.HALF_SET)
    settings = RefineSettings(iterations=int(iterations), search=search, lowpass_angstrom=lowpass_angstrom, mask=msk,
                              seed=int(seed), chunk=int(chunk))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / REFINE_CHECKPOINT
    res: RefineResult = refine(ps.as_source(), ps.tilt, ps.voxel_size, ref, settings, half_sets=halves,
                               checkpoint=checkpoint, resume=resume)
    if not distributed.is_writer():
        return {"command": "align refine", "processes": distributed.world_size()}  # rank 0 writes the one result
    write_aligned_table(out, ps.table, res.rotations, res.shifts, ps.voxel_size, res.scores, res.failed, res.half_sets)
    write_mrc(out / "average.mrc", res.average.cpu().numpy(), ps.voxel_size)
    write_mrc(out / "half1.mrc", res.half_maps[0].cpu().numpy(), ps.voxel_size)
    write_mrc(out / "half2.mrc", res.half_maps[1].cpu().numpy(), ps.voxel_size)
    metrics = {
        "command": "align refine", "n_particles": len(ps.table), "n_failed": int(res.failed.sum()),
        "failed_rows": (res.failed.nonzero().flatten() + 1).tolist(),
        "resolution_0143_A": res.resolution_0143, "resolution_05_A": res.resolution_05,
        "resolution_meaningful": res.resolution_meaningful, "shared_resolution_A": res.shared_resolution,
        "warning": None if res.resolution_meaningful else (
            f"no meaningful resolution: the half maps agree only up to {res.resolution_0143:.1f} Å, no finer than "
            f"the {res.shared_resolution:.1f} Å they share by construction (common start). The average may be "
            "noise or the reference's image; check the particles (contrast, picking) before using it."),
        **_fsc_lists(res.fsc, res.frequencies),
        "history": res.history, "mean_score": float(res.scores[~res.failed].mean()) if (~res.failed).any() else None,
        "box": ps.box, "voxel_size_A": ps.voxel_size, "symmetry": symmetry, "iterations": int(iterations),
        "angular_step_deg": float(angular_step), "max_shift_voxels": float(max_shift),
        "lowpass_angstrom": lowpass_angstrom, "reference": str(reference) if reference else None,
        "reference_free": reference is None, "contrast_check": contrast_record,
        "mask": str(mask) if mask else "soft sphere", "seed": int(seed), "chunk": int(chunk),
        "processes": distributed.world_size(), "device": str(dev), "seconds": time.perf_counter() - t0,
    }
    metrics["seconds_per_particle_iteration"] = metrics["seconds"] / max(1, len(ps.table) * int(iterations))
    _write_metrics(out, metrics)
    plot_fsc(out / "fsc.png", res.frequencies.cpu().numpy(), {"half maps": res.fsc.cpu().numpy()},
             {"FSC 0.143": res.resolution_0143, "FSC 0.5": res.resolution_05})
    plot_slices(out / "slices.png", res.average.cpu().numpy(),
                f"average of {len(ps.table) - int(res.failed.sum())} particles ({res.resolution_0143:.1f} Å)")
    plot_orientations(out / "orientations.png", res.rotations[~res.failed].cpu().numpy())
    checkpoint.unlink(missing_ok=True)  # the results are written: nothing left to resume
    log.info("wrote %s: resolution %.1f Å (FSC 0.143), %.1f Å (0.5); %d failed", out, res.resolution_0143,
             res.resolution_05, metrics["n_failed"])
    return metrics


def run_average(table: str | Path, out_dir: str | Path, *, mask: str | Path | None = None, symmetry: str = "C1",
                tilt_range: tuple[float, float] | None = None, device: str = "auto", seed: int = 0,
                by_class: bool = False, chunk: int = DEFAULT_CHUNK) -> dict:
    """``cryomine align average``: wedge-compensated average with the table's poses (no search).

    Half sets come from ``cmHalfSet`` when present, else a random balanced split (``seed``).
    Rows flagged ``cmAlignFailed = 1`` are left out. With ``by_class``, one average per
    ``rlnClassNumber`` (``class_NNN.mrc``). Writes ``average.mrc``, ``half1.mrc``, ``half2.mrc``,
    ``metrics.json``, ``fsc.png``, ``slices.png``.

    The subtomograms are streamed: read ``chunk`` at a time and added to the Fourier-space sums of
    the half maps (and classes), so memory depends on ``chunk`` and the box, not on the number of
    particles; the result does not depend on ``chunk`` (up to float summation order). Under
    ``torchrun`` each process sums its share of the particles (:mod:`cryomine_core.distributed`),
    the sums are added over the processes and rank 0 writes the one result.
    """
    if int(chunk) < 1:
        raise CryomineError(f"--chunk {chunk}: give at least 1 subtomogram per chunk.")
    t0 = time.perf_counter()
    dev = select_device(device)
    distributed.setup(dev)
    ps = load_particles(table, tilt_range, dev, read_volumes=False)
    try:
        from cryomine_core.geometry import symmetry_rotations

        symmetry_rotations(symmetry)
    except ValueError as exc:
        raise CryomineError(f"--symmetry {symmetry!r}: {exc}") from exc
    if by_class and T.CLASS not in ps.table.columns:  # checked before anything is written
        raise TableError(f"{ps.source}: averaging by class needs the {T.CLASS} column; give a classified table "
                         "(e.g. from 'cryomine classify predict' or 'cryomine subdivide') or leave out --by-class.")
    msk = check_mask(load_volume(mask, ps.box, ps.voxel_size, "mask", dev), mask) if mask else None
    fsc_mask = msk if msk is not None else soft_sphere_mask(ps.box, device=dev)
    has_poses = all(c in ps.table.columns for c in T.ANGLES)
    if not has_poses:
        log.warning("%s has no orientations (%s): the subtomograms are averaged as they are, unaligned (run "
                    "'cryomine align refine' for an aligned average)", ps.source, ", ".join(T.ANGLES))
    rot, shifts = table_poses(ps.table)
    rot, shifts = rot.float().to(dev), shifts.float().to(dev)
    include = torch.ones(len(ps.table), dtype=torch.bool, device=dev)
    if FAILED in ps.table.columns:
        include = torch.as_tensor(ps.table[FAILED].to_numpy(int) == 0, device=dev)
    b = len(ps.table)
    if T.HALF_SET in ps.table.columns:
        halves = torch.as_tensor(ps.table[T.HALF_SET].to_numpy(int), device=dev)
    else:
        halves = torch.as_tensor(np.random.default_rng(seed).permutation(np.arange(b) % 2) + 1, device=dev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"command": "align average", "n_particles": b, "n_excluded": int((~include).sum()),
                     "box": ps.box, "voxel_size_A": ps.voxel_size, "symmetry": symmetry, "device": str(dev),
                     "poses": "table" if has_poses else "none: unaligned average (identity orientations)"}
    if not bool(include.any()):
        raise CryomineError("no particles to average: every particle is flagged as failed.")
    avg = FourierAverager(ps.box, 2, symmetry, dev)
    cls, cavg, ids = None, None, []
    if by_class:
        labels = ps.table[T.CLASS].to_numpy(int)
        ids = sorted(set(labels.tolist()))
        cls = torch.as_tensor(np.searchsorted(ids, labels), device=dev)
        cavg = FourierAverager(ps.box, len(ids), symmetry, dev)
    mine = distributed.share(b)
    done = 0
    for rows, vols in ps.as_source().chunks(int(chunk), mine):
        for start in range(0, rows.numel(), AVERAGE_BATCH):  # one padded transform serves both sums
            sub = rows[start:start + AVERAGE_BATCH]
            spec = PaddedSpectrum(vols[start:start + AVERAGE_BATCH], pad=2)
            avg.add(spec, rot[sub], shifts[sub], ps.tilt[sub], halves[sub] - 1, include[sub])
            if cavg is not None:
                cavg.add(spec, rot[sub], shifts[sub], ps.tilt[sub], cls[sub], include[sub])
        done += rows.numel()
        log.info("averaged %d of %d particles%s", done, len(mine),
                 f" (rank {distributed.rank()} of {distributed.world_size()}; {b} in all)"
                 if distributed.world_size() > 1 else "")
    for acc in (avg, cavg):
        if acc is not None:
            distributed.sum_(acc.numerator, acc.weight, acc.count)
    metrics["processes"] = distributed.world_size()
    if not distributed.is_writer():
        return metrics  # rank 0 writes the one result
    halves_maps = avg.volumes(0.1)
    merged = avg.merged((0, 1))
    write_mrc(out / "average.mrc", merged.cpu().numpy(), ps.voxel_size)
    write_mrc(out / "half1.mrc", halves_maps[0].cpu().numpy(), ps.voxel_size)
    write_mrc(out / "half2.mrc", halves_maps[1].cpu().numpy(), ps.voxel_size)
    if int(avg.count[0]) and int(avg.count[1]):
        curve, freqs, r143, r05 = half_map_fsc(halves_maps, ps.voxel_size, fsc_mask)
        metrics.update(resolution_0143_A=r143, resolution_05_A=r05, **_fsc_lists(curve, freqs))
        plot_fsc(out / "fsc.png", freqs.cpu().numpy(), {"half maps": curve.cpu().numpy()},
                 {"FSC 0.143": r143, "FSC 0.5": r05})
    else:
        log.warning("one half set is empty: no FSC")
    plot_slices(out / "slices.png", merged.cpu().numpy(), f"average of {int(include.sum())} particles")
    if cavg is not None:
        vols = cavg.volumes(0.1)
        for j, c in enumerate(ids):
            write_mrc(out / f"class_{c:03d}.mrc", vols[j].cpu().numpy(), ps.voxel_size)
        remove_stale(out, "class_*.mrc", [f"class_{c:03d}.mrc" for c in ids])
        metrics["class_sizes"] = {str(c): int(cavg.count[j]) for j, c in enumerate(ids)}
        plot_gallery(out / "gallery.png", [v.cpu().numpy() for v in vols], [f"class {c}" for c in ids])
    metrics["seconds"] = time.perf_counter() - t0
    _write_metrics(out, metrics)
    log.info("wrote %s (%d particles averaged)", out, int(include.sum()))
    return metrics
