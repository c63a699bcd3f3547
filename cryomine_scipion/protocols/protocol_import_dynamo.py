"""Import a Dynamo table (.tbl) as subtomograms (with orientations) or as 3-D coordinates."""

import os

from pyworkflow.protocol import params

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.dynamo import read_dynamo_table
from cryomine_core.io.formats import dynamo_to_table, read_volume_list
from cryomine_scipion.convert_formats import (
    TomogramIndex,
    missingImages,
    stem,
    tableToCoordinates,
)
from cryomine_scipion.protocols.protocol_import_table import (
    COORDINATES,
    SUBTOMOGRAMS,
    ImportTableOutputs,
    ProtCryomineImportTableBase,
)

BASE_DYNAMO, BASE_SCIPION = 0, 1



class ProtCryomineImportDynamoTable(ProtCryomineImportTableBase):
    """Import particles from a Dynamo table (.tbl), keeping their orientations.

    As subtomograms: the table's tag (column 1) names each particle's MRC file in the data folder
    (by default particle_00001.mrc, ... as Dynamo names them); each SubTomogram's transform holds
    the row's Euler angles (tdrot, tilt, narot; columns 7-9) and shifts (dx, dy, dz; columns 4-6),
    its class (column 22) and its tilt range (ymintilt/ymaxtilt; columns 14-15).

    As coordinates: each row becomes a Coordinate3D at (x, y, z) (columns 24-26) on the tomogram
    numbered in column 20, with the row's rotation as its matrix and the class as group id; the
    shift is added to the position.

    Conventions: Dynamo counts voxels from 1, so positions are moved by -1 to Scipion's
    first-voxel origin (choose 'scipion-em-dynamo' if the table was written by that plugin, which
    does not shift them). Tomogram numbers are matched through the Dynamo volume list (.vll) when
    given, else by position in the input set (1 = first tomogram).
    """

    _label = "import particles from Dynamo table"
    _sourceKind = "a Dynamo table"

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("tblFile", params.FileParam, important=True, label="Dynamo table (.tbl)",
                      help="Dynamo particle table: one row per particle, Dynamo's column order (tag, aligned, "
                           "averaged, dx, dy, dz, tdrot, tilt, narot, cc, ...).")
        form.addParam("importAs", params.EnumParam, choices=["subtomograms", "coordinates"], default=SUBTOMOGRAMS,
                      display=params.EnumParam.DISPLAY_HLIST, label="Import as",
                      help="'subtomograms': the particle files of the data folder, with the table's orientations "
                           "as transforms. 'coordinates': positions on the given tomograms, with the orientations "
                           "as coordinate matrices.")
        form.addParam("dataFolder", params.PathParam, allowsNull=True, condition=f"importAs == {SUBTOMOGRAMS}",
                      label="Particle folder (optional)",
                      help="Folder holding the subtomogram MRC files. Empty: the folder of the .tbl file.")
        form.addParam("fileTemplate", params.StringParam, default="particle_{tag:05d}.mrc",
                      condition=f"importAs == {SUBTOMOGRAMS}", label="Particle file name",
                      help="Name of each particle's file, with {tag} replaced by the table's tag (Python format, "
                           "so {tag:05d} pads to 5 digits as Dynamo's particle_00001.mrc). Only MRC files are "
                           "read; convert Dynamo .em files to MRC first.")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", allowsNull=True,
                      label="Tomograms",
                      help="Tomograms the particles come from. Required to import coordinates; optional for "
                           "subtomograms (then each subtomogram also gets its coordinate and the voxel size is "
                           "taken from them when not given).")
        form.addParam("volumeList", params.FileParam, allowsNull=True, label="Dynamo volume list (.vll, optional)",
                      help="The .vll file the table was made with: line N is the tomogram numbered N in column 20. "
                           "Its entries are matched to the tomograms by file name (or tsId). Empty: tomogram N is "
                           "the N-th tomogram of the input set.")
        form.addParam("samplingRate", params.FloatParam, allowsNull=True, default=None,
                      label="Voxel size (Å)",
                      help="Å per voxel of the particles (Dynamo tables do not store it). Empty: the tomograms' "
                           "voxel size; required when no tomograms are given.")
        form.addParam("positionBase", params.EnumParam, choices=["Dynamo (from 1)", "scipion-em-dynamo (from 0)"],
                      default=BASE_DYNAMO, display=params.EnumParam.DISPLAY_HLIST, label="Positions count voxels",
                      help="Dynamo numbers voxels from 1 (its first voxel is V[1,1,1]); Scipion coordinates start "
                           "at 0. 'Dynamo' subtracts 1 from x, y, z. Choose 'scipion-em-dynamo' for tables written "
                           "by the scipion-em-dynamo plugin, which stores Scipion's positions unchanged.")
        form.addParam("boxSize", params.IntParam, default=32, validators=[params.GT(0)],
                      condition=f"importAs == {COORDINATES}", label="Box size (voxels)",
                      help="Box size stored with the coordinates (used by viewers and extraction defaults).")
        form.addParam("tiltRange", params.NumericListParam, default="-60 60", label="Tilt range (degrees)",
                      help="Minimum and maximum tilt angle for rows whose ymintilt and ymaxtilt are both 0 (not "
                           "set). It defines the missing wedge later CryoMine protocols use.")

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    # -------------------------- STEPS functions ------------------------------
    def _tomoNames(self, index):
        if index is None:
            return None
        if self.volumeList.get():
            entries = read_volume_list(self.volumeList.get())
            names, unmatched = {}, []
            for number, entry in entries.items():
                tomo = index.find(entry)
                if tomo is None:
                    unmatched.append(entry)
                else:
                    names[number] = tomo.getTsId() or stem(tomo.getFileName())
            if unmatched:
                raise ValueError(f"{self.volumeList.get()}: tomogram(s) {unmatched} of the volume list match no "
                                 f"input tomogram (tsIds / file names: {index.names()}). Give those tomograms.")
            return names
        return {i: t.getTsId() or stem(t.getFileName()) for i, t in enumerate(index.tomograms, start=1)}

    def _readTable(self, index):
        tomos = self.inputTomograms.get()
        voxel = self.samplingRate.get() or (tomos.getSamplingRate() if tomos is not None else None)
        base = 1 if self.positionBase.get() == BASE_DYNAMO else 0
        try:
            df = dynamo_to_table(read_dynamo_table(self.tblFile.get()), voxel_size=voxel,
                                 tomo_names=self._tomoNames(index), index_base=base,
                                 source=os.path.basename(self.tblFile.get()))
        except CryomineError as exc:
            raise ValueError(str(exc)) from exc
        return df

    def importStep(self):
        tomos = self.inputTomograms.get()
        index = TomogramIndex(tomos) if tomos is not None else None
        df = self._readTable(index)
        if index is not None and T.TOMO not in df.columns:
            df[T.TOMO] = index.tomograms[0].getTsId() or stem(index.tomograms[0].getFileName())
        if self.importAs.get() == COORDINATES:
            coords = self._createSetOfCoordinates3D(self.inputTomograms)
            tableToCoordinates(df, coords, index, boxSize=self.boxSize.get())
            self._defineOutputs(**{ImportTableOutputs.coordinates.name: coords})
            self._defineSourceRelation(self.inputTomograms, coords)
            return
        folder = self.dataFolder.get() or os.path.dirname(os.path.abspath(self.tblFile.get()))
        template = self.fileTemplate.get()
        df[T.IMAGE] = [os.path.abspath(os.path.join(folder, template.format(tag=int(tag)))) for tag in df[T.ITEM_ID]]
        missingImages(df, os.path.basename(self.tblFile.get()))
        self._defineSubtomogramOutputs(df, index, self.boxSize.get())

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        tbl = self.tblFile.get()
        if not tbl or not os.path.exists(tbl):
            errors.append(f"Dynamo table not found: {tbl!r}. Give the path of a .tbl file.")
        if self.importAs.get() == COORDINATES and self.inputTomograms.get() is None:
            errors.append("Importing coordinates needs the tomograms they belong to: fill 'Tomograms'.")
        if self.inputTomograms.get() is None and not self.samplingRate.get():
            errors.append("Dynamo tables do not store the voxel size: give 'Voxel size' or the tomograms.")
        if self.volumeList.get() and not os.path.exists(self.volumeList.get()):
            errors.append(f"Volume list not found: {self.volumeList.get()!r}. Give the .vll file or leave it empty.")
        if self.importAs.get() == SUBTOMOGRAMS and "{tag" not in (self.fileTemplate.get() or ""):
            errors.append("'Particle file name' must contain {tag} (e.g. particle_{tag:05d}.mrc).")
        errors += self._tiltRangeErrors()
        return errors

    def _sourceFile(self):
        return self.tblFile.get()
