"""What the particle-table imports (RELION STAR, Dynamo table) share: outputs, tilt range, the
subtomogram + coordinate outputs, summary and methods."""

from enum import Enum

from tomo.objects import SetOfCoordinates3D, SetOfSubTomograms

from cryomine_core.io import table as T
from cryomine_core.tilt_range import RULE, tilt_range_problem
from cryomine_scipion.convert_formats import tableToSubtomograms
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

SUBTOMOGRAMS, COORDINATES = 0, 1


class ImportTableOutputs(Enum):
    subtomograms = SetOfSubTomograms
    coordinates = SetOfCoordinates3D


class ProtCryomineImportTableBase(ProtCryomineBase):
    """Base of the table imports (not in the tree: it has no _label). Subclasses give the file
    they read (:meth:`_sourceFile`) and a phrase naming its format (``_sourceKind``)."""

    _possibleOutputs = ImportTableOutputs
    _sourceKind = "a particle table"

    def _sourceFile(self):
        raise NotImplementedError

    def _tiltRange(self):
        values = [float(v) for v in str(self.tiltRange.get() or "").split()]
        return tuple(values) if len(values) == 2 else None

    def _tiltRangeErrors(self):
        try:
            tilt = self._tiltRange()
        except ValueError:
            tilt = None
        if tilt is None:
            return ["'Tilt range' must be two numbers, minimum then maximum, e.g. '-60 60'."]
        problem = tilt_range_problem(*tilt)
        return [f"'Tilt range' {tilt[0]:g} {tilt[1]:g}: {problem} ({RULE})."] if problem else []

    def _defineSubtomogramOutputs(self, df, index, boxSize, coordSamplingRate=None):
        """Subtomograms from ``df`` (images, poses, classes) and, when the tomograms are known and
        the table has coordinates, their coordinates too; both defined as outputs."""
        subtomos = self._createSetOfSubTomograms()
        coords = None
        if index is not None and all(c in df.columns for c in T.COORDS):
            coords = self._createSetOfCoordinates3D(self.inputTomograms)
            coords.setSamplingRate(index.samplingRate)
            coords.setBoxSize(boxSize)
        tableToSubtomograms(df, subtomos, tiltRange=self._tiltRange(), index=index if coords is not None else None,
                            coordSet=coords, coordSamplingRate=coordSamplingRate)
        if coords is not None:
            self._defineOutputs(**{ImportTableOutputs.coordinates.name: coords})
            self._defineSourceRelation(self.inputTomograms, coords)
            subtomos.setCoordinates3D(coords)
        self._defineOutputs(**{ImportTableOutputs.subtomograms.name: subtomos})
        if index is not None:
            self._defineSourceRelation(self.inputTomograms, subtomos)

    def _summary(self):
        summary = []
        for out in ImportTableOutputs:
            obj = getattr(self, out.name, None)
            if obj is not None:
                summary.append(f"{obj.getSize()} {out.name} imported from {self._sourceFile()} at "
                               f"{obj.getSamplingRate():.3f} Å/voxel.")
        return summary or ["Output not ready yet."]

    def _methods(self):
        out = getattr(self, ImportTableOutputs.subtomograms.name, None) or \
            getattr(self, ImportTableOutputs.coordinates.name, None)
        if out is None:
            return []
        return [f"{out.getSize()} particles with orientations were imported from {self._sourceKind} with CryoMine."]
