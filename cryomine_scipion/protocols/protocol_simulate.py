"""Simulate subtomograms or crowded tomograms with ground truth (for testing any downstream protocol)."""

import os
import re
from enum import Enum

import numpy as np
from pyworkflow.protocol import params
from tomo.objects import SetOfClassesSubTomograms, SetOfCoordinates3D, SetOfSubTomograms, SetOfTomograms, SetOfTomoMasks

from cryomine_core.io import table as T
from cryomine_scipion.constants import METRICS, OUTPUT_TABLE
from cryomine_scipion.convert import (
    filePath,
    readTable,
    simulatedCoordinatesToScipion,
    simulatedTomogramsToScipion,
    tableToSubtomograms,
    tomoAcquisition,
)
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

SUBTOMOGRAMS, TOMOGRAMS = 0, 1
RECONSTRUCTIONS = ["dfi", "wbp"]


class SimulateOutputs(Enum):
    subtomograms = SetOfSubTomograms
    classes = SetOfClassesSubTomograms
    tomograms = SetOfTomograms
    coordinates = SetOfCoordinates3D
    labelMasks = SetOfTomoMasks  # the instance maps stay in extra/instances (one Enum value per class)


class ProtCryomineSimulate(ProtCryomineBase):
    """Simulate cryo-ET data with known ground truth, following Che et al. (2018).

    Two kinds of data:
    - subtomograms: one subtomogram per particle at a uniformly random rotation and shift, with
      projections over the tilt range, CTF, detector MTF, noise to the requested SNR and
      reconstruction. Outputs the subtomograms (each with the tilt range in its acquisition and
      its true class as class id) and the true classes as a SetOfClassesSubTomograms whose
      representatives are the true maps.
    - tomograms: crowded tomograms with particles of several classes at random positions and
      orientations, optional membrane vesicles. Outputs the tomograms, the true coordinates (class
      as group id, orientation as the coordinate's matrix) and the class-label maps as tomo masks
      (the instance maps, one label per particle, are in extra/instances).

    The true pose of each simulated subtomogram is kept in the run's extra/particles.star (and in
    the attributes _cmTrueRot/_cmTrueTilt/_cmTruePsi, RELION ZYZ degrees, and _cmTrueShiftX/Y/Z, Å);
    the transforms of the output subtomograms are the identity, so no later protocol starts from
    the answer. SNR is defined as signal variance / noise variance of the reconstructed volume; the
    realised value is measured and shown in the summary.
    """

    _label = "simulate"
    _possibleOutputs = SimulateOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("kind", params.EnumParam, choices=["subtomograms", "tomograms"], default=SUBTOMOGRAMS,
                      display=params.EnumParam.DISPLAY_HLIST, label="Simulate",
                      help="'subtomograms': a labelled set of particles in boxes (for training and testing "
                           "classification, subdivision and alignment). 'tomograms': crowded tomograms with "
                           "coordinates and label maps (for extraction, picking and segmentation).")
        form.addParam("structures", params.StringParam, default="phantom:0 phantom:1 phantom:2",
                      label="Structures",
                      help="One class per entry, separated by spaces: a path to an MRC map or a PDB/mmCIF model, "
                           "a name fetched with 'cryomine structures fetch', or phantom:N (procedural asymmetric "
                           "test objects that need no file). Write NAME=SPEC to name a class, e.g. "
                           "ribo=/data/ribosome.mrc. Maps are resampled to the voxel size below.")
        form.addParam("inputVolumes", params.MultiPointerParam, pointerClass="Volume", allowsNull=True,
                      label="Structures from the project (optional)",
                      help="Volumes already in the project (e.g. imported maps or averages) added as further "
                           "classes, named after their labels.")
        form.addParam("voxelSize", params.FloatParam, default=9.2, validators=[params.Positive],
                      label="Voxel size (Å)",
                      help="Sampling of the simulated data. Che et al. (2018) used 9.2 Å (0.92 nm).")
        form.addParam("seed", params.IntParam, default=0, label="Random seed",
                      help="The same seed and parameters give the same data.")

        form.addSection(label="Particles")
        form.addParam("nPerClass", params.IntParam, default=100, validators=[params.GT(0)],
                      condition=f"kind=={SUBTOMOGRAMS}", label="Subtomograms per class",
                      help="Number of subtomograms simulated for each class.")
        form.addParam("boxSize", params.IntParam, default=40, validators=[params.GT(7)],
                      label="Box size (voxels)",
                      help="Subtomograms: edge of the cubic boxes (40 voxels at 9.2 Å as in Che et al. 2018); the "
                           "largest structure plus twice the maximum shift must fit, otherwise the run stops with "
                           "the size it needs. Tomograms: the box size recorded with the output coordinates, "
                           "which extraction protocols offer as their default.")
        form.addParam("maxShift", params.FloatParam, default=2.0, validators=[params.GE(0)],
                      condition=f"kind=={SUBTOMOGRAMS}", label="Maximum shift (voxels)",
                      help="Each particle is shifted from the box centre by a random amount up to this, per axis.")
        form.addParam("emptyClass", params.BooleanParam, default=False, condition=f"kind=={SUBTOMOGRAMS}",
                      label="Add an 'empty' class?",
                      help="Add a class of background-only boxes (noise through the same acquisition), as in the "
                           "paper's 23-class benchmark.")
        form.addParam("tomoSize", params.NumericListParam, default="512 512 200", condition=f"kind=={TOMOGRAMS}",
                      label="Tomogram size x y z (voxels)",
                      help="Size of each tomogram in voxels, as x y z (the MRC array is z, y, x).")
        form.addParam("nTomograms", params.IntParam, default=1, validators=[params.GT(0)],
                      condition=f"kind=={TOMOGRAMS}", label="Number of tomograms",
                      help="How many tomograms to simulate (each with its own particles and noise).")
        form.addParam("occupancy", params.FloatParam, default=0.15, validators=[params.Range(0.001, 0.6)],
                      condition=f"kind=={TOMOGRAMS}", label="Occupancy",
                      help="Target fraction of the volume covered by the particles' bounding spheres. Particles "
                           "never overlap, so very crowded targets are not always reached: the summary shows the "
                           "realised value.")
        form.addParam("vesicles", params.IntParam, default=0, validators=[params.GE(0)],
                      condition=f"kind=={TOMOGRAMS}", label="Membrane vesicles per tomogram",
                      help="Spherical lipid vesicles added to each tomogram (label 'membrane' in the label map).")

        form.addSection(label="Acquisition")
        form.addParam("snr", params.FloatParam, default=0.1, validators=[params.Positive], label="SNR",
                      help="Signal-to-noise ratio of the reconstructed volume: signal variance / noise variance "
                           "inside the box (subtomograms) or over the tomogram. Che et al. (2018) used 0.1, 0.05, "
                           "0.03 and 0.01.")
        form.addParam("tiltMin", params.FloatParam, default=-60.0, label="Minimum tilt (deg)",
                      help="Lowest tilt angle. The range [min, max] must contain 0 and stay within (-90, 90); its "
                           "complement is the missing wedge.")
        form.addParam("tiltMax", params.FloatParam, default=60.0, label="Maximum tilt (deg)",
                      help="Highest tilt angle (e.g. 60, 50 or 40 for the ranges of Che et al. 2018).")
        form.addParam("tiltStep", params.FloatParam, default=2.0, validators=[params.Positive],
                      label="Tilt step (deg)", help="Angular increment of the tilt series.")
        form.addParam("voltage", params.FloatParam, default=300.0, validators=[params.Positive],
                      label="Voltage (kV)", help="Acceleration voltage, for the CTF.")
        form.addParam("cs", params.FloatParam, default=2.0, validators=[params.GE(0)],
                      label="Spherical aberration (mm)", help="Cs of the objective lens, for the CTF.")
        form.addParam("defocus", params.FloatParam, default=5.0, label="Defocus (µm)",
                      help="Defocus in µm, positive for underfocus (5 µm as in the paper).")
        form.addParam("amplitudeContrast", params.FloatParam, default=0.07, validators=[params.Range(0, 1)],
                      label="Amplitude contrast", help="Fraction of amplitude contrast, for the CTF.")
        form.addParam("applyCtf", params.BooleanParam, default=True, label="Apply the CTF?",
                      help="Multiply each projection by the contrast transfer function (no CTF correction is made, "
                           "as in the paper's simulation).")
        form.addParam("applyMtf", params.BooleanParam, default=True, label="Apply the detector MTF?",
                      help="Attenuate high frequencies of each projection with a detector modulation transfer "
                           "function.")
        form.addParam("reconstruction", params.EnumParam, choices=["direct Fourier inversion",
                                                                   "weighted back-projection"],
                      default=0, label="Reconstruction", expertLevel=params.LEVEL_ADVANCED,
                      help="How the tilt series is turned back into a volume.")
        self._defineComputeParams(form, gpu=True, threads=2)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.simulateStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- STEPS functions ------------------------------
    def _structureSpecs(self):
        specs = self.structures.get().split() if self.structures.get() else []
        for i, pointer in enumerate(self.inputVolumes or []):
            vol = pointer.get()
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", vol.getObjLabel() or "") or f"volume{i + 1}"
            specs.append(f"{name}={filePath(vol)}")
        return specs

    def _tomoSizeXYZ(self):
        return [int(v) for v in str(self.tomoSize.get()).split()]

    def simulateStep(self):
        args = ["--out", self._getExtraPath(), "--structures", *self._structureSpecs(),
                "--snr", self.snr.get(), "--voxel-size", self.voxelSize.get(), "--seed", self.seed.get(),
                "--tilt-range", self.tiltMin.get(), self.tiltMax.get(), "--tilt-step", self.tiltStep.get(),
                "--voltage", self.voltage.get(), "--cs", self.cs.get(), "--defocus", self.defocus.get(),
                "--amplitude-contrast", self.amplitudeContrast.get(),
                "--reconstruction", RECONSTRUCTIONS[self.reconstruction.get()]]
        if not self.applyCtf.get():
            args.append("--no-ctf")
        if not self.applyMtf.get():
            args.append("--no-mtf")
        if self.kind.get() == SUBTOMOGRAMS:
            args += ["--n-per-class", self.nPerClass.get(), "--box", self.boxSize.get(),
                     "--max-shift", self.maxShift.get()]
            if self.emptyClass.get():
                args.append("--empty-class")
            self.runCore("simulate subtomograms", args, gpu=True)
        else:
            args += ["--size", *self._tomoSizeXYZ(), "--n-tomograms", self.nTomograms.get(),
                     "--occupancy", self.occupancy.get(), "--vesicles", self.vesicles.get()]
            self.runCore("simulate tomograms", args, gpu=True)

    def _acquisition(self):
        return tomoAcquisition(self.tiltMin.get(), self.tiltMax.get(), self.tiltStep.get(), self.voltage.get(),
                               self.cs.get(), self.amplitudeContrast.get())

    def createOutputStep(self):
        if self.kind.get() == SUBTOMOGRAMS:
            self._createSubtomogramOutputs(readTable(self._getExtraPath(OUTPUT_TABLE)))
        else:
            self._createTomogramOutputs(readTable(self._getExtraPath(OUTPUT_TABLE), require=(T.TOMO, *T.COORDS)))

    def _createSubtomogramOutputs(self, df):
        subtomos = self._createSetOfSubTomograms()
        tableToSubtomograms(df, subtomos, self._acquisition(), keepTruth=True)
        self._defineOutputs(**{SimulateOutputs.subtomograms.name: subtomos})

        maps = {os.path.splitext(f)[0]: self._getExtraPath("maps", f)
                for f in os.listdir(self._getExtraPath("maps"))}
        names = dict(zip(df[T.CLASS].astype(int), df[T.CLASS_NAME].astype(str)))
        classes = self._createSetOfClassesSubTomograms(subtomos)

        def updateClass(cls):
            name = names.get(cls.getObjId(), str(cls.getObjId()))
            cls.setObjLabel(name)
            rep = cls.getRepresentative()
            rep.setSamplingRate(subtomos.getSamplingRate())
            if name in maps:
                rep.setLocation(maps[name])

        classes.classifyItems(updateClassCallback=updateClass)
        self._defineOutputs(**{SimulateOutputs.classes.name: classes})
        self._defineSourceRelation(subtomos, classes)

    def _createTomogramOutputs(self, df):
        tomos = self._createSetOfTomograms()
        labels = self._createSetOfTomoMasks("labels")
        simulatedTomogramsToScipion(self._getExtraPath(), df, self._acquisition(), tomos, labels)
        self._defineOutputs(**{SimulateOutputs.tomograms.name: tomos})
        coords = self._createSetOfCoordinates3D(tomos)
        simulatedCoordinatesToScipion(df, tomos, coords, self.boxSize.get())
        self._defineOutputs(**{SimulateOutputs.coordinates.name: coords,
                               SimulateOutputs.labelMasks.name: labels})

    def _createSetOfTomoMasks(self, suffix):
        return self._createSet(SetOfTomoMasks, "tomomasks%s.sqlite", suffix)

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        if not self._structureSpecs():
            errors.append("No structures: enter at least one in 'Structures' (e.g. phantom:0 phantom:1) or pick "
                          "volumes from the project.")
        lo, hi = self.tiltMin.get(), self.tiltMax.get()
        if lo is None or hi is None or not (-90 < lo <= 0 <= hi < 90) or lo == hi:
            errors.append(f"Tilt range [{lo}, {hi}] is not valid: it must contain 0 and lie inside (-90, 90), "
                          "e.g. -60 and 60.")
        if self.kind.get() == TOMOGRAMS:
            try:
                size = self._tomoSizeXYZ()
            except ValueError:
                size = []
            if len(size) != 3 or min(size) < 8:
                errors.append(f"'Tomogram size' must be three integers x y z of at least 8 voxels, got "
                              f"'{self.tomoSize.get()}'.")
        return errors

    def _summary(self):
        m = self.readMetrics(METRICS)
        if not m:
            return ["Output not ready yet."]
        lines = [f"{m.get('n_particles', '?')} particles of {len(m.get('classes', []))} classes "
                 f"({', '.join(m.get('classes', []))}).",
                 f"SNR requested {self.snr.get()}, realised {m.get('snr_realised', float('nan')):.4f}; tilt "
                 f"{self.tiltMin.get():g} to {self.tiltMax.get():g} deg in steps of {self.tiltStep.get():g}."]
        if self.kind.get() == TOMOGRAMS:
            occ = [t.get("occupancy", np.nan) for t in m.get("tomograms", [])]
            lines.append(f"{m.get('n_tomograms')} tomograms; realised occupancy {np.mean(occ):.3f} "
                         f"(target {self.occupancy.get()}).")
        return lines

    def _methods(self):
        m = self.readMetrics(METRICS)
        if not m:
            return []
        what = "subtomograms" if self.kind.get() == SUBTOMOGRAMS else "tomograms"
        return [f"Simulated {what} ({m.get('n_particles')} particles, SNR {self.snr.get()}, tilt range "
                f"{self.tiltMin.get():g} to {self.tiltMax.get():g} degrees, {self.voxelSize.get():g} Å/voxel) were "
                "made with CryoMine following the simulation of Che et al. (2018)."]

    def _citations(self):
        return ["Che2018"]
