"""Import the picks of a copick project (CZ cryoET data portal layout) as 3-D coordinates."""

import os

from pyworkflow.protocol import params

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.copick_project import read_copick_picks
from cryomine_scipion.convert_formats import TomogramIndex, tableToCoordinates, unmatchedTomograms
from cryomine_scipion.protocols.protocol_import_table import ImportTableOutputs, ProtCryomineImportTableBase


class ProtCryomineImportCopick(ProtCryomineImportTableBase):
    """Import particle picks of a copick project (the layout of the CZ cryoET data portal and of the CZII
    picking challenge) as 3-D coordinates on your tomograms, with their orientations.

    copick stores, per run (tomogram), one set of picks per object, user and session; each point has a
    location in Å and a transformation from object to tomogram space. Runs are matched to the tomograms
    by name (tsId, or file name without folder and extension); locations are divided by the tomograms'
    voxel size (voxel i, 0-based, is at i x voxel size Å); the rotation of the transformation becomes
    the coordinate's matrix and the object's label its group id.
    """

    _label = "import picks from copick"
    _sourceKind = "a copick project"

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("configFile", params.FileParam, important=True, label="copick configuration (.json)",
                      help="The project's configuration file (config_type 'filesystem'), naming its storage and its "
                           "pickable objects.")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms",
                      help="The tomograms to put the picks on; copick run names are matched to their tsIds or "
                           "file names. Locations (Å) are converted with these tomograms' voxel size.")
        form.addParam("objects", params.StringParam, default="", label="Objects (optional)",
                      help="Names of the pickable objects to import, separated by spaces. Empty: every particle "
                           "object of the project.")
        form.addParam("userId", params.StringParam, default="", label="User or tool (optional)",
                      help="Import only the picks of this user_id (a person or a tool, e.g. 'cryomine'). Empty: all.")
        form.addParam("sessionId", params.StringParam, default="", label="Session (optional)",
                      help="Import only the picks of this session_id. Empty: all.")
        form.addParam("boxSize", params.IntParam, default=32, validators=[params.GT(0)], label="Box size (voxels)",
                      help="Box size stored with the coordinates (used by viewers and as the extraction default).")

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    # -------------------------- STEPS functions ------------------------------
    def importStep(self):
        tomos = self.inputTomograms.get()
        try:
            df = read_copick_picks(self.configFile.get(), voxel_size=tomos.getSamplingRate(),
                                   user_id=self.userId.get() or None, session_id=self.sessionId.get() or None,
                                   objects=(self.objects.get() or "").split() or None)
        except CryomineError as exc:
            raise ValueError(str(exc)) from exc
        index = TomogramIndex(tomos)
        unmatchedTomograms(df, index, os.path.basename(self.configFile.get()))
        coords = self._createSetOfCoordinates3D(self.inputTomograms)
        tableToCoordinates(df, coords, index, boxSize=self.boxSize.get())
        self._defineOutputs(**{ImportTableOutputs.coordinates.name: coords})
        self._defineSourceRelation(self.inputTomograms, coords)
        self.info(f"{len(df)} picks of {sorted(set(df[T.CLASS_NAME]))} on {df[T.TOMO].nunique()} run(s) imported")

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        config = self.configFile.get()
        if not config or not os.path.exists(config):
            return [f"copick configuration not found: {config!r}. Give the project's .json file."]
        return []

    def _sourceFile(self):
        return self.configFile.get()
