"""Simulation of cryo-ET data with ground truth: structures, subtomograms, tomograms, galleries.

Structures (:mod:`.structures`): MRC maps, PDB/mmCIF models (:mod:`.atomic`), offline phantoms
(:mod:`.phantoms`) and fetched catalog models (:mod:`.fetch`) behind :func:`load_structure`.
Imaging (:mod:`.tilt`, :mod:`.acquisition`): tilt series by the projection-slice theorem, CTF,
MTF, white noise, reconstruction by direct Fourier inversion or weighted back-projection. SNR
definition, calibration and measurement: :mod:`.noise`. Data sets: :mod:`.subtomograms` and
:mod:`.datasets` (subtomograms), :mod:`.tomograms` (crowded tomograms), :mod:`.gallery` (figure).
Conventions: those of :mod:`cryomine_core.geometry` and :mod:`cryomine_core.fourier` (zyx
arrays, xyz coordinates in voxels, beam along z at zero tilt, tilt axis y).
"""

from cryomine_core.simulate.acquisition import AcquisitionParams, TiltModel
from cryomine_core.simulate.datasets import simulate_subtomogram_dataset
from cryomine_core.simulate.fetch import CATALOG, cache_dir, fetch_structures, list_structures
from cryomine_core.simulate.noise import noise_sigma, snr_from_pairs
from cryomine_core.simulate.phantoms import phantom_volume
from cryomine_core.simulate.structures import Structure, check_fits, load_structure
from cryomine_core.simulate.subtomograms import EMPTY, SubtomogramBatch, SubtomogramSimulator
from cryomine_core.simulate.tomograms import render_scene, simulate_tomogram, simulate_tomogram_dataset

__all__ = [
    "AcquisitionParams",
    "CATALOG",
    "EMPTY",
    "Structure",
    "SubtomogramBatch",
    "SubtomogramSimulator",
    "TiltModel",
    "cache_dir",
    "check_fits",
    "fetch_structures",
    "list_structures",
    "load_structure",
    "noise_sigma",
    "phantom_volume",
    "render_scene",
    "simulate_subtomogram_dataset",
    "simulate_tomogram",
    "simulate_tomogram_dataset",
    "snr_from_pairs",
]
