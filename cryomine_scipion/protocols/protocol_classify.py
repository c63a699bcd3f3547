"""Classify subtomograms with a trained CryoMine CNN."""

from enum import Enum

from pyworkflow.object import Float
from pyworkflow.protocol import params
from tomo.objects import SetOfClassesSubTomograms

from cryomine_core.io import table as T
from cryomine_scipion.constants import INPUT_TABLE, OUTPUT_TABLE
from cryomine_scipion.convert import readTable, subtomogramsToTable
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

AVERAGES_DIR = "averages"


class ClassifyOutputs(Enum):
    classes = SetOfClassesSubTomograms


class ProtCryomineClassify(ProtCryomineBase):
    """Sort subtomograms into the classes a CNN was trained on ("train CNN classifier").

    Every subtomogram gets the class with the highest probability, and its calibrated confidence
    as score (temperature scaling fitted on the training run's validation split). With a
    confidence threshold, items below it go to an extra class "unknown" instead of being forced
    into a known one. Each class's representative is the average of its members (a plain mean
    with missing-wedge compensation, without alignment: a quick look, not a refined structure).
    The subtomograms must have the box and voxel size the model was trained with.
    """

    _label = "classify with CNN"
    _possibleOutputs = ClassifyOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSubtomos", params.PointerParam, pointerClass="SetOfSubTomograms", important=True,
                      label="Subtomograms", help="Subtomograms to classify (same box and voxel size as the model's).")
        form.addParam("inputModel", params.PointerParam, pointerClass="CryomineModel", important=True,
                      label="Trained model", help="Output of 'train CNN classifier'.")
        self._defineTiltRangeFallback(form, "The class averages made after classification compensate this "
                                            "missing wedge.")
        form.addSection(label="Classification")
        form.addParam("useUnknown", params.BooleanParam, default=False, label="Label low-confidence items unknown?",
                      help="Put subtomograms whose calibrated confidence is below the threshold into a class "
                           "'unknown' (class 0 in the core's table), e.g. structures absent from training.")
        form.addParam("threshold", params.FloatParam, default=0.5, validators=[params.Range(0.0, 1.0)],
                      condition="useUnknown", label="Confidence threshold",
                      help="Calibrated probability below which an item is 'unknown'.")
        form.addParam("batchSize", params.IntParam, default=256, validators=[params.GT(0)],
                      expertLevel=params.LEVEL_ADVANCED, label="Batch size",
                      help="Subtomograms per forward pass; lower it if the GPU runs out of memory.")
        self._defineComputeParams(form, gpu=True, threads=2)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.predictStep, needsGPU=True)
        self._insertFunctionStep(self.averageStep, needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- STEPS functions ------------------------------
    def convertInputStep(self):
        n = subtomogramsToTable(self.inputSubtomos.get(), self._getExtraPath(INPUT_TABLE),
                                tiltRange=self._fallbackTiltRange())
        self.info(f"{n} subtomograms written to {INPUT_TABLE}")

    def predictStep(self):
        args = ["--in", self._getExtraPath(INPUT_TABLE), "--model", self.inputModel.get().getPath(),
                "--out", self._getExtraPath(), "--batch-size", self.batchSize.get()]
        if self.useUnknown.get():
            args += ["--unknown-threshold", self.threshold.get()]
        self.runCore("classify predict", args, gpu=True, processes=True)

    def averageStep(self):
        self.runCore("align average", ["--in", self._getExtraPath(OUTPUT_TABLE), "--out",
                                       self._getExtraPath(AVERAGES_DIR), "--by-class"])

    def createOutputStep(self):
        inSet = self.inputSubtomos.get()
        df = readTable(self._getExtraPath(OUTPUT_TABLE))
        rows = {int(r[T.ITEM_ID]): r for _, r in df.iterrows()}
        names = dict(zip(df[T.CLASS].astype(int), df[T.CLASS_NAME].astype(str)))
        classes = self._createSetOfClassesSubTomograms(self.inputSubtomos)

        def updateItem(item, _row=None):
            row = rows.get(item.getObjId())
            if row is None:
                item._appendItem = False
                return
            # class 0 ("unknown") becomes the last class: Scipion class ids start at 1
            label = int(row[T.CLASS])
            item.setClassId(label if label > 0 else len(self.inputModel.get().getClassNames()) + 1)
            item._cmScore = Float(float(row[T.SCORE]))

        def updateClass(cls):
            number = cls.getObjId()
            label = number if number <= len(self.inputModel.get().getClassNames()) else 0
            cls.setObjLabel(names.get(label, "unknown"))
            rep = cls.getRepresentative()
            rep.setFileName(self._getExtraPath(AVERAGES_DIR, f"class_{label:03d}.mrc"))
            rep.setSamplingRate(inSet.getSamplingRate())

        classes.classifyItems(updateItemCallback=updateItem, updateClassCallback=updateClass)
        self._defineOutputs(**{ClassifyOutputs.classes.name: classes})
        self._defineSourceRelation(self.inputSubtomos, classes)
        self._defineSourceRelation(self.inputModel, classes)

    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [("Class averages (central slices)", self._getExtraPath(AVERAGES_DIR, "gallery.png"))]

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = self._fallbackTiltRangeErrors()
        subtomos, model = self.inputSubtomos.get(), self.inputModel.get()
        if subtomos is None or model is None:
            return errors
        if subtomos.getSize() == 0:
            errors.append("The input set of subtomograms is empty.")
        box = subtomos.getDim()
        if box is not None and model.getBoxSize() and tuple(box) != (model.getBoxSize(),) * 3:
            errors.append(f"The subtomograms are {box[0]}x{box[1]}x{box[2]} voxels but the model was trained on "
                          f"{model.getBoxSize()}^3: extract them with box {model.getBoxSize()} (CryoMine 'extract "
                          "subtomograms') or train a model on this box.")
        rate, modelRate = subtomos.getSamplingRate(), model.getSamplingRate()
        if rate and modelRate and abs(rate - modelRate) > 0.01 * modelRate:
            errors.append(f"The subtomograms have {rate:.2f} Å/voxel but the model was trained at {modelRate:.2f} "
                          f"Å/voxel: re-extract with 'Rescale to voxel size' = {modelRate:.2f}, or train a model at "
                          "this voxel size.")
        return errors

    def _summary(self):
        out = getattr(self, ClassifyOutputs.classes.name, None)
        if out is None:
            return ["Output not ready yet."]
        sizes = ", ".join(f"{c.getObjLabel()}: {c.getSize()}" for c in out.iterItems())
        return [f"{self.inputSubtomos.get().getSize()} subtomograms classified with "
                f"{self.inputModel.get().getArchitecture()}: {sizes}."]

    def _methods(self):
        out = getattr(self, ClassifyOutputs.classes.name, None)
        if out is None:
            return []
        return [f"Subtomograms were classified with a {self.inputModel.get().getArchitecture()} network (Che et al. "
                "2018) in CryoMine."]

    def _citations(self):
        return ["Che2018"]
