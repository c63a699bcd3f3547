"""Import a RELION particle STAR file as subtomograms (with orientations) or as 3-D coordinates."""

import os

from pyworkflow.protocol import params

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.relion import read_relion_star
from cryomine_scipion.convert_formats import (
    TomogramIndex,
    missingImages,
    tableToCoordinates,
    unmatchedTomograms,
)
from cryomine_scipion.protocols.protocol_import_table import (
    COORDINATES,
    SUBTOMOGRAMS,
    ImportTableOutputs,
    ProtCryomineImportTableBase,
)


class ProtCryomineImportRelionStar(ProtCryomineImportTableBase):
    """Import particles from a RELION STAR file, keeping their orientations.

    As subtomograms: each row's rlnImageName becomes a SubTomogram whose transform holds the row's
    rlnAngleRot/Tilt/Psi and rlnOriginX/Y/ZAngst (or rlnOriginX/Y/Z in pixels), with its class
    (rlnClassNumber) and tilt range. With tomograms, each subtomogram also gets its 3-D coordinate
    (rlnCoordinateX/Y/Z, rlnTomoName matched to the tomograms' tsIds or file names), and the
    coordinates are a second output.

    As coordinates: each row becomes a Coordinate3D on its tomogram, with the row's orientation as
    the coordinate's matrix and the class as group id; the origin shift, if any, is applied to the
    position (the particle centre).

    Conventions: RELION's rotation matrix A is the rotation taking the reference into the particle;
    origins are minus the particle's shift; positions are voxels from the centre of the first voxel,
    as scipion-em-reliontomo reads them. RELION 5 files (centred coordinates in Å) are imported by
    "import particles from RELION 5".
    """

    _label = "import particles from RELION STAR"
    _sourceKind = "a RELION STAR file"

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("starFile", params.FileParam, important=True, label="STAR file",
                      help="RELION particle STAR file (block data_particles, optionally data_optics). Needed "
                           "columns: rlnImageName to import subtomograms; rlnCoordinateX/Y/Z (and rlnTomoName when "
                           "there are several tomograms) to import coordinates. Orientations (rlnAngleRot/Tilt/Psi) "
                           "and origins (rlnOriginX/Y/ZAngst) are optional; missing ones mean identity / no shift.")
        form.addParam("importAs", params.EnumParam, choices=["subtomograms", "coordinates"], default=SUBTOMOGRAMS,
                      display=params.EnumParam.DISPLAY_HLIST, label="Import as",
                      help="'subtomograms': the files named in rlnImageName, with their orientations as "
                           "transforms. 'coordinates': 3-D positions on the given tomograms, with the "
                           "orientations as coordinate matrices (for extraction or picking comparisons).")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", allowsNull=True,
                      label="Tomograms",
                      help="Tomograms the particles come from. Required to import coordinates; optional for "
                           "subtomograms (then each subtomogram also gets its coordinate). rlnTomoName is matched "
                           "to each tomogram's tsId or to its file name without folder and extension.")
        form.addParam("samplingRate", params.FloatParam, allowsNull=True, default=None,
                      label="Particle voxel size (Å, optional)",
                      help="Å per voxel of the subtomograms (and of the origin shifts). Empty: read it from the "
                           "file (rlnImagePixelSize or rlnTomoTiltSeriesPixelSize of the optics group, or "
                           "rlnPixelSize / rlnDetectorPixelSize), else the tomograms' voxel size.")
        form.addParam("coordSamplingRate", params.FloatParam, allowsNull=True, default=None,
                      label="Coordinates voxel size (Å, optional)",
                      help="Å per voxel of rlnCoordinateX/Y/Z. Empty: the coordinates are in voxels of the given "
                           "tomograms. Set it when the coordinates refer to another binning (e.g. unbinned "
                           "tilt-series pixels); they are then scaled to the tomograms.")
        form.addParam("boxSize", params.IntParam, default=32, validators=[params.GT(0)],
                      condition=f"importAs == {COORDINATES}", label="Box size (voxels)",
                      help="Box size stored with the coordinates (used by viewers and extraction defaults).")
        form.addParam("tiltRange", params.NumericListParam, default="-60 60", label="Tilt range (degrees)",
                      help="Minimum and maximum tilt angle, used for subtomograms whose row has no tilt range "
                           "(cmTiltMin/cmTiltMax, written by CryoMine exports). It defines the missing wedge later "
                           "CryoMine protocols use.")

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    # -------------------------- STEPS functions ------------------------------
    def _readTable(self):
        tomos = self.inputTomograms.get()
        try:
            return read_relion_star(self.starFile.get(), voxel_size=self.samplingRate.get() or None,
                                    default_voxel_size=tomos.getSamplingRate() if tomos is not None else None,
                                    require_images=self.importAs.get() == SUBTOMOGRAMS)
        except CryomineError as exc:
            raise ValueError(str(exc)) from exc

    def importStep(self):
        df = self._readTable()
        source = os.path.basename(self.starFile.get())
        tomos = self.inputTomograms.get()
        index = TomogramIndex(tomos) if tomos is not None else None
        if index is not None and all(c in df.columns for c in T.COORDS):
            unmatchedTomograms(df, index, source)
        if self.importAs.get() == COORDINATES:
            coords = self._createSetOfCoordinates3D(self.inputTomograms)
            tableToCoordinates(df, coords, index, coordSamplingRate=self.coordSamplingRate.get(),
                               boxSize=self.boxSize.get())
            self._defineOutputs(**{ImportTableOutputs.coordinates.name: coords})
            self._defineSourceRelation(self.inputTomograms, coords)
            return
        missingImages(df, source)
        self._defineSubtomogramOutputs(df, index, _boxOf(df), coordSamplingRate=self.coordSamplingRate.get())

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        star = self.starFile.get()
        if not star or not os.path.exists(star):
            errors.append(f"STAR file not found: {star!r}. Give the path of a RELION particle STAR file.")
        if self.importAs.get() == COORDINATES and self.inputTomograms.get() is None:
            errors.append("Importing coordinates needs the tomograms they were picked on: fill 'Tomograms'.")
        errors += self._tiltRangeErrors()
        for name in ("samplingRate", "coordSamplingRate"):
            value = getattr(self, name).get()
            if value is not None and value <= 0:
                errors.append(f"'{self.getParam(name).label.get()}' must be a positive number of Å (or empty).")
        return errors

    def _sourceFile(self):
        return self.starFile.get()



def _boxOf(df):
    """Box size of the imported subtomograms, from the first one's header (an unreadable header is an error)."""
    from cryomine_core.io.mrc import read_mrc_header

    try:
        return int(read_mrc_header(df[T.IMAGE].iloc[0]).shape[-1])
    except CryomineError as exc:
        raise ValueError(f"Cannot read the box size of the subtomograms: {exc}") from exc
