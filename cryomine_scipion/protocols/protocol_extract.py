"""Extract subtomograms from tomograms at 3-D coordinates (from any picker)."""

from enum import Enum

import numpy as np
from pwem.objects import Transform
from pyworkflow.object import Float
from pyworkflow.protocol import params
from tomo.objects import SetOfSubTomograms, SubTomogram

from cryomine_core.io import table as T
from cryomine_scipion.constants import INPUT_TABLE, OUTPUT_TABLE
from cryomine_scipion.convert import coordinatesToTable, readTable
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase


class ExtractOutputs(Enum):
    subtomograms = SetOfSubTomograms


class ProtCryomineExtract(ProtCryomineBase):
    """Cut a cubic subtomogram out of the tomogram around each 3-D coordinate.

    Coordinates may come from any picker (tomo's imports, CryoMine segmentation, other plugins).
    Each subtomogram keeps its coordinate, its tomogram and the tomogram's tilt range (the missing
    wedge later protocols need). Optional rescaling to a target voxel size (Fourier cropping),
    contrast inversion and per-particle normalisation. Particles whose box crosses the tomogram
    edge are skipped or padded, and the counts are reported in the summary.
    """

    _label = "extract subtomograms"
    _possibleOutputs = ExtractOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputCoordinates", params.PointerParam, pointerClass="SetOfCoordinates3D",
                      important=True, label="Coordinates",
                      help="3-D coordinates of the particles to extract, from any picking or import protocol.")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", allowsNull=True,
                      label="Tomograms (optional)",
                      help="Tomograms to cut the subtomograms from. Leave empty to use the tomograms the "
                           "coordinates were picked on. Give another set (e.g. denoised or unbinned tomograms "
                           "with the same tsIds) to extract from it instead; coordinates are scaled by the ratio "
                           "of sampling rates.")
        form.addParam("boxSize", params.IntParam, default=40, validators=[params.GT(3)],
                      label="Box size (voxels)",
                      help="Side of the cubic subtomograms, in voxels of the output (after rescaling). The CNN "
                           "classifiers of Che et al. (2018) use 40 voxels at 9.2 Å/voxel; choose a box about "
                           "1.5-2x the particle diameter.")
        form.addParam("targetVoxelSize", params.FloatParam, allowsNull=True, default=None,
                      label="Rescale to voxel size (Å, optional)",
                      help="Output voxel size in Å. Empty keeps the tomogram's voxel size. A larger value bins "
                           "the data (Fourier cropping, no aliasing), e.g. to match a trained model's voxel size.")
        form.addSection(label="Preprocess")
        form.addParam("invertContrast", params.BooleanParam, default=False, label="Invert contrast?",
                      help="Multiply by -1. Use it when protein is dark in the tomogram (usual in cryo-ET) and "
                           "the next step expects bright density (CryoMine's simulator makes bright density).")
        form.addParam("normalise", params.BooleanParam, default=True, label="Normalise?",
                      help="Give each subtomogram zero mean and unit standard deviation (recommended for the "
                           "CNN classifiers and clustering).")
        form.addParam("edgeMode", params.EnumParam, choices=["skip", "pad"], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label="Particles at the edge",
                      help="What to do with particles whose box crosses the tomogram boundary: 'skip' leaves "
                           "them out; 'pad' fills the missing part with the box's mean value. The summary "
                           "reports how many were skipped or padded.")
        self._defineComputeParams(form, gpu=False, threads=1)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep)
        self._insertFunctionStep(self.extractStep)
        self._insertFunctionStep(self.createOutputStep)

    # -------------------------- STEPS functions ------------------------------
    def _getTomograms(self):
        if self.inputTomograms.get() is not None:
            return self.inputTomograms.get()
        return self.inputCoordinates.get().getPrecedents()

    def convertInputStep(self):
        n = coordinatesToTable(self.inputCoordinates.get(), self._getTomograms(), self._getExtraPath(INPUT_TABLE))
        self.info(f"{n} coordinates written to {INPUT_TABLE}")

    def extractStep(self):
        args = ["--coords", self._getExtraPath(INPUT_TABLE), "--out", self._getExtraPath(),
                "--box", self.boxSize.get(), "--edge", ["skip", "pad"][self.edgeMode.get()]]
        if self.targetVoxelSize.get():
            args += ["--voxel-size", self.targetVoxelSize.get()]
        if self.invertContrast.get():
            args.append("--invert")
        if not self.normalise.get():
            args.append("--no-normalise")
        self.runCore("extract", args)

    def createOutputStep(self):
        df = readTable(self._getExtraPath(OUTPUT_TABLE))
        coords = {c.getObjId(): c.clone() for c in self.inputCoordinates.get().iterCoordinates()}
        tomos = {t.getTsId(): t.clone() for t in self._getTomograms().iterItems()}
        outSet = self._createSetOfSubTomograms()
        voxel = float(df[T.VOXEL_SIZE].iloc[0])
        outSet.setSamplingRate(voxel)
        outSet.setCoordinates3D(self.inputCoordinates)
        firstTomo = next(iter(tomos.values()))
        if firstTomo.getAcquisition() is not None:
            outSet.setAcquisition(firstTomo.getAcquisition().clone())
        for _, row in df.iterrows():
            coord = coords[int(row[T.ITEM_ID])]
            tomo = tomos[coord.getTomoId()]
            sub = SubTomogram()
            sub.setLocation(row[T.IMAGE])
            sub.setSamplingRate(voxel)
            sub.setCoordinate3D(coord)
            sub.setVolName(tomo.getFileName())
            if tomo.getAcquisition() is not None:
                sub.setAcquisition(tomo.getAcquisition().clone())
            sub.setTransform(Transform(np.eye(4)))
            outSet.append(sub)
        metrics = self.readMetrics()
        self.nSkipped = Float(metrics.get("n_skipped", 0))
        self.nPadded = Float(metrics.get("n_padded", 0))
        self._store(self.nSkipped, self.nPadded)
        self._defineOutputs(**{ExtractOutputs.subtomograms.name: outSet})
        self._defineSourceRelation(self.inputCoordinates, outSet)

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        coords = self.inputCoordinates.get()
        if coords is not None and coords.getSize() == 0:
            errors.append("The input coordinate set is empty: pick or import coordinates first.")
        if coords is not None and self.inputTomograms.get() is None and coords.getPrecedents() is None:
            errors.append("The coordinates do not say which tomograms they belong to: give the tomograms "
                          "in 'Tomograms (optional)'.")
        if self.targetVoxelSize.get() is not None and self.targetVoxelSize.get() <= 0:
            errors.append("'Rescale to voxel size' must be a positive number of Å (or empty).")
        return errors

    def _summary(self):
        summary = []
        out = getattr(self, ExtractOutputs.subtomograms.name, None)
        if out is None:
            summary.append("Output not ready yet.")
        else:
            m = self.readMetrics()
            summary.append(f"{out.getSize()} subtomograms of {self.boxSize.get()} voxels at "
                           f"{out.getSamplingRate():.3f} Å/voxel extracted from {m.get('n_input', '?')} coordinates.")
            summary.append(f"At the tomogram edge: {m.get('n_skipped', 0)} skipped, {m.get('n_padded', 0)} padded.")
            if m.get("n_outside"):
                summary.append(f"{m['n_outside']} coordinates lie outside their tomogram and were not extracted: check "
                               "that the coordinates belong to these tomograms (same binning).")
        return summary

    def _methods(self):
        out = getattr(self, ExtractOutputs.subtomograms.name, None)
        if out is None:
            return []
        return [f"{out.getSize()} subtomograms were extracted with CryoMine in boxes of {self.boxSize.get()} voxels "
                f"at {out.getSamplingRate():.2f} Å/voxel."]
