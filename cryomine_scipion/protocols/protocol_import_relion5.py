"""Import RELION 5 tomography particles (particles.star or an optimisation set) as 3-D coordinates."""

import os

from pyworkflow.protocol import params

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.relion5 import is_optimisation_set, read_relion5_particles
from cryomine_scipion.convert_formats import TomogramIndex, tableToCoordinates, unmatchedTomograms
from cryomine_scipion.protocols.protocol_import_table import ImportTableOutputs, ProtCryomineImportTableBase


class ProtCryomineImportRelion5(ProtCryomineImportTableBase):
    """Import the particles of a RELION 5 tomography project (RELION 5, Warp/M, AreTomo, pytom, reliontomo)
    as 3-D coordinates on your tomograms, with their orientations.

    RELION 5 gives each particle's position in Å from the centre of its tomogram
    (rlnCenteredCoordinateX/Y/ZAngst) and describes the tomograms in tomograms.star (bin-1 size,
    tilt-series pixel size, binning, handedness). The positions are converted to voxels of the
    tomograms given here (their voxel size may be any binning of the tilt series): bin-1 pixel =
    centred Å / tilt-series pixel size + size / 2, then divided by the binning. Files with
    rlnCoordinateX/Y/Z in bin-1 pixels (RELION 4 style) are read too.

    Orientation: RELION 5 composes the subtomogram angles (rlnTomoSubtomogramRot/Tilt/Psi, e.g. from
    template matching or a filament frame) with the particle angles (rlnAngleRot/Tilt/Psi); the
    composed rotation becomes the coordinate's matrix, and the origin shift (rlnOriginX/Y/ZAngst,
    in the subtomogram frame) is applied to the position. Classes (rlnClassNumber) become group ids.

    RELION 5's own particle images are pseudo-subtomograms (2-D stacks, or 3-D boxes already rotated
    by the subtomogram angles) and are not imported: extract subtomograms from the coordinates with
    CryoMine's extraction.
    """

    _label = "import particles from RELION 5"
    _sourceKind = "a RELION 5 particle file"

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("starFile", params.FileParam, important=True, label="Particles or optimisation set",
                      help="RELION 5 particles.star (data_optics + data_particles), or the optimisation_set.star "
                           "that names the particles and tomograms files (then 'Tomograms file' may stay empty). "
                           "Relative names in an optimisation set are looked up next to it and in the two folders "
                           "above (the RELION project folder).")
        form.addParam("tomogramsStar", params.FileParam, allowsNull=True, label="Tomograms file (tomograms.star)",
                      help="RELION 5 tomograms.star: each tomogram's bin-1 size (rlnTomoSizeX/Y/Z), tilt-series "
                           "pixel size and binning. Needed to place centred coordinates; empty: the one the "
                           "optimisation set names.")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms",
                      help="The tomograms to put the coordinates on. rlnTomoName is matched to each tomogram's "
                           "tsId or to its file name without folder and extension; the positions are converted to "
                           "the voxel size of these tomograms.")
        form.addParam("boxSize", params.IntParam, default=32, validators=[params.GT(0)], label="Box size (voxels)",
                      help="Box size stored with the coordinates (used by viewers and as the extraction default).")

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    # -------------------------- STEPS functions ------------------------------
    def importStep(self):
        tomos = self.inputTomograms.get()
        try:
            df = read_relion5_particles(self.starFile.get(), self.tomogramsStar.get() or None,
                                        voxel_size=tomos.getSamplingRate())
        except CryomineError as exc:
            raise ValueError(str(exc)) from exc
        index = TomogramIndex(tomos)
        unmatchedTomograms(df, index, os.path.basename(self.starFile.get()))
        coords = self._createSetOfCoordinates3D(self.inputTomograms)
        tableToCoordinates(df, coords, index, boxSize=self.boxSize.get())
        self._defineOutputs(**{ImportTableOutputs.coordinates.name: coords})
        self._defineSourceRelation(self.inputTomograms, coords)
        self.info(f"{len(df)} particles of {df[T.TOMO].nunique()} tomogram(s) imported as coordinates at "
                  f"{tomos.getSamplingRate():g} Å/voxel")

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        star = self.starFile.get()
        if not star or not os.path.exists(star):
            return [f"RELION 5 file not found: {star!r}. Give particles.star or optimisation_set.star."]
        tomograms = self.tomogramsStar.get()
        if tomograms and not os.path.exists(tomograms):
            errors.append(f"Tomograms file not found: {tomograms!r}. Give RELION 5's tomograms.star or leave it "
                          "empty to use the one the optimisation set names.")
        try:
            is_optimisation_set(star)
        except CryomineError as exc:
            errors.append(str(exc))
        return errors

    def _sourceFile(self):
        return self.starFile.get()
