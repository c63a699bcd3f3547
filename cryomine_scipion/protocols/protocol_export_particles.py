"""Export aligned subtomograms or classes to RELION STAR and Dynamo .tbl files."""

import os

from pyworkflow.object import String
from pyworkflow.protocol import params

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.dynamo import write_dynamo_table
from cryomine_core.io.formats import table_to_dynamo
from cryomine_core.io.relion import write_relion_star
from cryomine_scipion.convert_formats import subtomogramsToExportTable
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

RELION_STAR = "particles.star"
DYNAMO_DIR = "dynamo"
DYNAMO_TBL = "particles.tbl"
DYNAMO_VLL = "tomograms.vll"
BASE_DYNAMO, BASE_SCIPION = 0, 1


class ProtCryomineExportParticles(ProtCryomineBase):
    """Write aligned subtomograms, or the subtomograms of classes, as RELION and Dynamo tables.

    RELION: particles.star with an optics block (voxel size, 3-D images) and a particles block
    (rlnTomoName, rlnImageName, rlnCoordinateX/Y/Z, rlnAngleRot/Tilt/Psi, rlnOriginX/Y/ZAngst,
    rlnClassNumber, rlnTomoParticleId; CryoMine's tilt range and item id are kept as extra columns).

    Dynamo: dynamo/particles.tbl (tag = Scipion item id, shifts, tdrot/tilt/narot, tilt range, tomogram
    number, class, position) and tomograms.vll (line N is tomogram number N). Optionally the particle
    files are linked as dynamo/particle_<tag>.mrc so the folder is a Dynamo data folder.

    Class numbers: for a set of classes, each subtomogram gets its class's id; for subtomograms, their
    class id when they have one. Files are written atomically (complete or absent) in the run's extra
    folder and, when given, also in an export folder.
    """

    _label = "export particles to RELION / Dynamo"

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam,
                      pointerClass="SetOfSubTomograms,SetOfClassesSubTomograms", important=True,
                      label="Subtomograms or classes",
                      help="Aligned subtomograms (their transforms become the orientations and shifts) or a set of "
                           "subtomogram classes (every member is written with its class number).")
        form.addParam("writeRelion", params.BooleanParam, default=True, label="Write RELION STAR?",
                      help="Write particles.star (RELION 3.1/4 particle columns, origins in Å).")
        form.addParam("writeDynamo", params.BooleanParam, default=True, label="Write Dynamo table?",
                      help="Write dynamo/particles.tbl and tomograms.vll.")
        form.addParam("positionBase", params.EnumParam, choices=["Dynamo (from 1)", "scipion-em-dynamo (from 0)"],
                      default=BASE_DYNAMO, display=params.EnumParam.DISPLAY_HLIST, condition="writeDynamo",
                      label="Dynamo positions count voxels",
                      help="Dynamo numbers voxels from 1, so 'Dynamo' writes x, y, z = Scipion position + 1. Choose "
                           "'scipion-em-dynamo' to write Scipion's positions unchanged, as that plugin expects.")
        form.addParam("linkParticles", params.BooleanParam, default=True, condition="writeDynamo",
                      label="Link particle files for Dynamo?",
                      help="Link each subtomogram as dynamo/particle_<tag>.mrc beside the table (Dynamo's data "
                           "folder layout, also what scipion-em-dynamo's import expects).")
        form.addParam("exportFolder", params.PathParam, allowsNull=True, label="Export folder (optional)",
                      help="Also write the files here (created if needed; existing files of the same name are "
                           "replaced). Empty: only in the run's extra folder.")

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.exportStep)

    # -------------------------- STEPS functions ------------------------------
    def _coordSamplingRate(self):
        inputSet = self.inputParticles.get()
        images = inputSet.getImages() if hasattr(inputSet, "getImages") else inputSet
        coords = images.getCoordinates3D() if hasattr(images, "getCoordinates3D") else None
        coords = coords.get() if hasattr(coords, "get") else coords
        return coords.getSamplingRate() if coords is not None else None

    def exportStep(self):
        df = subtomogramsToExportTable(self.inputParticles.get(), coordSamplingRate=self._coordSamplingRate())
        folders = [self._getExtraPath()] + ([self.exportFolder.get()] if self.exportFolder.get() else [])
        written = []
        try:
            for folder in folders:
                written += self._write(df, folder)
        except CryomineError as exc:
            raise ValueError(str(exc)) from exc
        self.exported = String(";".join(written))
        self._store(self.exported)

    def _write(self, df, folder):
        written = []
        if self.writeRelion.get():
            written.append(str(write_relion_star(os.path.join(folder, RELION_STAR), df)))
        if self.writeDynamo.get():
            tomoNames = sorted(set(df[T.TOMO].astype(str))) if T.TOMO in df.columns else []
            numbers = {name: i for i, name in enumerate(tomoNames, start=1)}
            base = 1 if self.positionBase.get() == BASE_DYNAMO else 0
            tbl = table_to_dynamo(df, tomo_numbers=numbers or None, index_base=base)
            dynDir = os.path.join(folder, DYNAMO_DIR)
            written.append(str(write_dynamo_table(os.path.join(dynDir, DYNAMO_TBL), tbl)))
            if tomoNames:
                text = "".join(self._tomoFile(n) + "\n" for n in tomoNames)
                atomic_write_text(os.path.join(folder, DYNAMO_VLL), text)
                written.append(os.path.join(folder, DYNAMO_VLL))
            if self.linkParticles.get():
                for tag, image in zip(tbl["tag"], df[T.IMAGE]):
                    link = os.path.join(dynDir, f"particle_{int(tag):05d}.mrc")
                    if os.path.lexists(link):
                        os.remove(link)
                    os.symlink(os.path.abspath(image), link)
        return written

    def _tomoFile(self, name):
        """The tomogram file of a tsId, as the input subtomograms name it (else the tsId itself)."""
        if not hasattr(self, "_tomoFiles"):
            self._tomoFiles = {}
            inputSet = self.inputParticles.get()
            images = inputSet.getImages() if hasattr(inputSet, "getImages") else inputSet
            for item in images.iterItems():
                if item.hasCoordinate3D() and item.getVolName():
                    self._tomoFiles.setdefault(item.getCoordinate3D().getTomoId(), item.getVolName())
        return os.path.abspath(self._tomoFiles[name]) if name in self._tomoFiles else name

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = []
        if not self.writeRelion.get() and not self.writeDynamo.get():
            errors.append("Choose at least one format: RELION STAR or Dynamo table.")
        inputSet = self.inputParticles.get()
        if inputSet is not None and inputSet.getSize() == 0:
            errors.append("The input is empty: give aligned subtomograms or non-empty classes.")
        return errors

    def _summary(self):
        files = getattr(self, "exported", None)
        if files is None or not files.get():
            return ["Output not ready yet."]
        return [f"{self.inputParticles.get().getSize()} {'classes' if self._isClasses() else 'subtomograms'} "
                f"exported to:"] + files.get().split(";")

    def _isClasses(self):
        inputSet = self.inputParticles.get()
        return inputSet is not None and inputSet.getClassName().startswith("SetOfClasses")

    def _methods(self):
        if getattr(self, "exported", None) is None:
            return []
        return ["Particle orientations were exported to RELION STAR and/or Dynamo table format with CryoMine."]
