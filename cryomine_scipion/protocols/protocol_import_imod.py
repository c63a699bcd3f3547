"""Import 3-D coordinates from IMOD models (.mod), one model per tomogram."""

import glob
import os
from enum import Enum

import numpy as np
from pyworkflow.protocol import params
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D, SetOfCoordinates3D

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.formats import read_imod_coordinates
from cryomine_scipion.convert_formats import TomogramIndex, stem
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase


class ImportImodOutputs(Enum):
    coordinates = SetOfCoordinates3D


class ProtCryomineImportImodCoordinates(ProtCryomineBase):
    """Import particle positions from IMOD model files (.mod), e.g. picked in 3dmod.

    Every point of every object becomes a Coordinate3D (the IMOD object number is its group id).
    Each model is matched to a tomogram by name: the model's file name without extension must be
    the tomogram's tsId or its file name without extension (tomo1.mod -> tomo1.mrc); a single model
    with a single tomogram needs no match.

    Convention: 3dmod puts the model origin at the corner of the first pixel in X and Y and at the
    centre of the first section in Z, so the centre of voxel (i, j, k) is the model point
    (i + 0.5, j + 0.5, k). The import subtracts (0.5, 0.5, 0) to get Scipion's coordinates
    (voxels from the centre of the first voxel).
    """

    _label = "import coordinates from IMOD models"
    _possibleOutputs = ImportImodOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("filesPath", params.PathParam, important=True, label="Folder with models",
                      help="Folder holding the IMOD model files (.mod), one per tomogram.")
        form.addParam("filesPattern", params.StringParam, default="*.mod", label="Pattern",
                      help="Which files of the folder to import (shell wildcards, e.g. '*.mod' or 'tomo*_picks.mod').")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms",
                      help="Tomograms the models were drawn on. A model file name without extension must equal a "
                           "tomogram's tsId or its file name without extension.")
        form.addParam("samplingRate", params.FloatParam, allowsNull=True, default=None,
                      label="Model voxel size (Å, optional)",
                      help="Å per voxel of the volume the models were drawn on. Empty: the tomograms' voxel size. "
                           "Set it when the models were drawn on a binned or unbinned copy; points are then scaled "
                           "to the tomograms.")
        form.addParam("boxSize", params.IntParam, default=32, validators=[params.GT(0)], label="Box size (voxels)",
                      help="Box size stored with the coordinates (used by viewers and extraction defaults).")

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    # -------------------------- STEPS functions ------------------------------
    def _files(self):
        return sorted(glob.glob(os.path.join(self.filesPath.get() or "", self.filesPattern.get() or "*.mod")))

    def _match(self, files, index):
        if len(files) == 1 and len(index.tomograms) == 1:
            return {files[0]: index.tomograms[0]}
        matched, unmatched = {}, []
        for path in files:
            tomo = index.find(stem(path))
            if tomo is None:
                unmatched.append(os.path.basename(path))
            else:
                matched[path] = tomo
        if unmatched:
            raise ValueError(f"IMOD model(s) {unmatched} match no tomogram (tsIds / file names: {index.names()}). "
                             "Rename each model after its tomogram (tomo1.mod for tomo1.mrc) or remove it from the "
                             "pattern.")
        return matched

    def importStep(self):
        tomos = self.inputTomograms.get()
        index = TomogramIndex(tomos)
        files = self._files()
        if not files:
            raise ValueError(f"No file matches {self.filesPattern.get()!r} in {self.filesPath.get()!r}.")
        scale = (self.samplingRate.get() / index.samplingRate) if self.samplingRate.get() else 1.0
        coords = self._createSetOfCoordinates3D(self.inputTomograms)
        coords.setSamplingRate(index.samplingRate)
        coords.setBoxSize(self.boxSize.get())
        counts = {}
        for path, tomo in self._match(files, index).items():
            try:
                points = read_imod_coordinates(path)
            except CryomineError as exc:
                raise ValueError(str(exc)) from exc
            xyz = points[list(T.COORDS)].to_numpy(float) * scale
            for (x, y, z), obj in zip(xyz, points["object_id"].to_numpy(int)):
                coord = Coordinate3D()
                coord.setVolume(tomo)
                coord.setPosition(x, y, z, BOTTOM_LEFT_CORNER)
                coord.setMatrix(np.eye(4))
                coord.setGroupId(int(obj))
                coords.append(coord)
            counts[os.path.basename(path)] = len(points)
        self.info(f"Points per model: {counts}")
        self._defineOutputs(**{ImportImodOutputs.coordinates.name: coords})
        self._defineSourceRelation(self.inputTomograms, coords)

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        if not self.filesPath.get() or not os.path.isdir(self.filesPath.get()):
            errors.append(f"Folder not found: {self.filesPath.get()!r}. Give the folder holding the .mod files.")
        elif not self._files():
            errors.append(f"No file matches {self.filesPattern.get()!r} in {self.filesPath.get()}.")
        if self.samplingRate.get() is not None and self.samplingRate.get() <= 0:
            errors.append("'Model voxel size' must be a positive number of Å (or empty).")
        return errors

    def _summary(self):
        out = getattr(self, ImportImodOutputs.coordinates.name, None)
        if out is None:
            return ["Output not ready yet."]
        return [f"{out.getSize()} coordinates imported from IMOD models in {self.filesPath.get()} "
                f"({self.filesPattern.get()}); IMOD points shifted by (-0.5, -0.5, 0) voxels to Scipion's origin."]

    def _methods(self):
        out = getattr(self, ImportImodOutputs.coordinates.name, None)
        if out is None:
            return []
        return [f"{out.getSize()} particle coordinates were imported from IMOD models with CryoMine."]
