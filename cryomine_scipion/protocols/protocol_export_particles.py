"""Export aligned subtomograms or classes to RELION 3.1/4 STAR, RELION 5, Dynamo .tbl files and copick picks."""

import os

from pyworkflow.object import String
from pyworkflow.protocol import params

from cryomine_core.errors import CryomineError
from cryomine_core.io import table as T
from cryomine_core.io.atomic import atomic_write_text
from cryomine_core.io.convert import CopickOptions, Relion5Options, relion5_companions, write_particles
from cryomine_core.io.dynamo import write_dynamo_table
from cryomine_core.io.formats import table_to_dynamo
from cryomine_core.io.relion import write_relion_star
from cryomine_core.io.relion5 import ORIENTATIONS
from cryomine_scipion.convert_formats import subtomogramsToExportTable
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

RELION_STAR = "particles.star"
RELION5_DIR = "relion5"
RELION5_STAR = "particles.star"
HANDS = (-1.0, 1.0)
DYNAMO_DIR = "dynamo"
DYNAMO_TBL = "particles.tbl"
DYNAMO_VLL = "tomograms.vll"
BASE_DYNAMO, BASE_SCIPION = 0, 1


class ProtCryomineExportParticles(ProtCryomineBase):
    """Write aligned subtomograms, or the subtomograms of classes, as RELION and Dynamo tables.

    RELION: particles.star with an optics block (voltage, Cs and amplitude contrast of the set's
    acquisition, voxel size, box size, 3-D images) and a particles block (rlnTomoName, rlnImageName,
    rlnCoordinateX/Y/Z, rlnAngleRot/Tilt/Psi, rlnOriginX/Y/ZAngst, rlnClassNumber, rlnTomoParticleId;
    CryoMine's tilt range and item id are kept as extra columns).

    RELION 5: relion5/particles.star (positions in Å from each tomogram's centre), relion5/
    particles_tomograms.star (each tomogram's bin-1 size, tilt-series pixel size, binning and
    handedness, from the tomogram files' headers) and relion5/particles_optimisation_set.star naming
    both, for RELION 5, Warp/M and scipion-em-reliontomo.

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
        form.addParam("writeRelion5", params.BooleanParam, default=False, label="Write RELION 5 files?",
                      help="Write relion5/particles.star (centred coordinates in Å), the tomograms file and an "
                           "optimisation set, for RELION 5 tomography, Warp/M and reliontomo. Needs the "
                           "subtomograms' coordinates and tomogram files (subtomograms extracted from tomograms).")
        form.addParam("tiltSeriesPixelSize", params.FloatParam, allowsNull=True, default=None,
                      condition="writeRelion5", label="Tilt-series pixel size (Å, optional)",
                      help="Å per pixel of the unbinned tilt series. RELION 5 measures positions and tomogram "
                           "sizes in these pixels; the binning written is the tomogram voxel size over this. "
                           "Empty: the tomograms' voxel size (binning 1).")
        form.addParam("hand", params.EnumParam, choices=["-1", "1"], default=0, condition="writeRelion5",
                      display=params.EnumParam.DISPLAY_HLIST, label="Handedness (rlnTomoHand)",
                      help="RELION's handedness of the tomograms: the sign of the defocus change through the "
                           "sample. -1 is RELION's default; it does not move particles.")
        # the choices, in the order of cryomine_core.io.relion5.ORIENTATIONS ("subtomogram", "particle")
        form.addParam("relion5Orientation", params.EnumParam, choices=["oriented picks", "refined particles"],
                      default=0, condition="writeRelion5", display=params.EnumParam.DISPLAY_HLIST,
                      label="RELION 5 poses as",
                      help="'oriented picks': the rotation in rlnTomoSubtomogramRot/Tilt/Psi and the shift folded "
                           "into the position (what reliontomo's coordinate import reads). 'refined particles': "
                           "the rotation in rlnAngleRot/Tilt/Psi and the shift in rlnOriginX/Y/ZAngst. RELION 5 "
                           "reads both as the same pose.")
        form.addParam("writeCopick", params.BooleanParam, default=False, label="Write copick picks?",
                      help="Add the particles to a copick project (CZ cryoET data portal layout) as picks: one set "
                           "per tomogram (run) and class (object), locations in Å, rotations as transformations. "
                           "Class names must be pickable objects of the project.")
        form.addParam("copickConfig", params.FileParam, condition="writeCopick", label="copick configuration",
                      help="The project's configuration .json (its storage receives the picks; runs the project "
                           "lacks are created).")
        form.addParam("copickUser", params.StringParam, default="cryomine", condition="writeCopick",
                      label="copick user id", help="Whose picks these are (a person or a tool name).")
        form.addParam("copickSession", params.StringParam, default="1", condition="writeCopick",
                      label="copick session id",
                      help="Session of the picks; an earlier set of the same object, user and session is replaced.")
        form.addParam("copickObject", params.StringParam, default="", condition="writeCopick",
                      label="copick object (optional)",
                      help="File every particle under this pickable object. Empty: each particle's class number is "
                           "matched to an object's label (classes, or subtomograms with a class).")
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
            if self.writeCopick.get():
                options = CopickOptions(user_id=self.copickUser.get(), session_id=self.copickSession.get(),
                                        objects=(self.copickObject.get(),) if self.copickObject.get() else None)
                write_particles(df, self.copickConfig.get(), "copick", copick=options)
                written.append(f"copick {self.copickConfig.get()} (user {options.user_id}, session "
                               f"{options.session_id})")
        except CryomineError as exc:
            raise ValueError(str(exc)) from exc
        self.exported = String(";".join(written))
        self._store(self.exported)

    def _write(self, df, folder):
        written = []
        if self.writeRelion.get():
            written.append(str(write_relion_star(os.path.join(folder, RELION_STAR), df, **self._optics())))
        if self.writeRelion5.get():
            written += self._writeRelion5(df, os.path.join(folder, RELION5_DIR, RELION5_STAR))
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

    def _optics(self):
        """Voltage, Cs and amplitude contrast of the input's acquisition (RELION's usual values where unset)."""
        inputSet = self.inputParticles.get()
        images = inputSet.getImages() if hasattr(inputSet, "getImages") else inputSet
        acq = images.getAcquisition() if hasattr(images, "getAcquisition") else None
        values = {}
        if acq is not None:
            for key, getter in (("voltage_kv", "getVoltage"), ("cs_mm", "getSphericalAberration"),
                                ("amplitude_contrast", "getAmplitudeContrast")):
                value = getattr(acq, getter)()
                if value is not None and value > 0:
                    values[key] = float(value)
        return values

    def _writeRelion5(self, df, path):
        if T.TOMO not in df.columns or not all(c in df.columns for c in T.COORDS):
            raise ValueError("RELION 5 needs each particle's tomogram and position: these subtomograms have no "
                             "coordinates. Export subtomograms extracted from coordinates.")
        files = {name: self._tomoFile(name) for name in sorted(set(df[T.TOMO].astype(str)))}
        missing = [name for name, file in files.items() if not os.path.exists(file)]
        if missing:
            raise ValueError(f"RELION 5 needs the tomograms' sizes, and the tomogram file of {missing[:3]} is not "
                             "known or not found. Export subtomograms extracted from tomograms.")
        out = df.assign(**{T.TOMO_FILE: df[T.TOMO].astype(str).map(files)})
        options = Relion5Options(tilt_series_pixel_size=self.tiltSeriesPixelSize.get() or None,
                                 hand=HANDS[self.hand.get()],
                                 orientation=ORIENTATIONS[self.relion5Orientation.get()])
        write_particles(out, path, "relion5", relion5=options)
        return [path, *(str(p) for p in relion5_companions(path))]

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
        if not (self.writeRelion.get() or self.writeRelion5.get() or self.writeDynamo.get() or self.writeCopick.get()):
            errors.append("Choose at least one format: RELION STAR, RELION 5, Dynamo table or copick.")
        if self.writeCopick.get():
            if not self.copickConfig.get() or not os.path.exists(self.copickConfig.get()):
                errors.append("'copick configuration' not found: give the project's .json file.")
            if not self.copickUser.get() or not self.copickSession.get():
                errors.append("Give the copick user id and session id of the picks.")
        pixel = self.tiltSeriesPixelSize.get()
        if self.writeRelion5.get() and pixel is not None and pixel <= 0:
            errors.append("'Tilt-series pixel size' must be a positive number of Å (or empty).")
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
        return ["Particle orientations were exported to RELION STAR, RELION 5, Dynamo table and/or copick format with "
                "CryoMine."]
