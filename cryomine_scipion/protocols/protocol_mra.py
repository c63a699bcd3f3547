"""Multi-reference alignment: classify subtomograms by aligning them to K references."""

from enum import Enum

from pyworkflow.protocol import params
from tomo.objects import SetOfClassesSubTomograms

from cryomine_core.io import table as T
from cryomine_scipion.protocols.protocol_align import ProtCryomineAlignBase


class MraOutputs(Enum):
    classes = SetOfClassesSubTomograms


class ProtCryomineMultiRefClassify(ProtCryomineAlignBase):
    """Classify subtomograms by alignment to K references (multi-reference alignment).

    Each subtomogram is aligned to every reference with the wedge-aware constrained correlation
    of "align and average" and assigned to the reference it matches best; each class is then
    re-averaged (wedge-compensated) and the cycle repeats. Without a reference, a reference-free
    average of all subtomograms gives a common frame and the K classes are seeded from the data in
    that frame (k-means++ on the constrained correlation); with one, the K starting references are
    copies of it with a little noise. Output: the classes with their averages as representatives
    and each member's transform and score.

    A checkpoint is written after every iteration: if the run stops, "Continue" resumes from the
    last finished iteration to the result an uninterrupted run gives.
    """

    _label = "multi-reference classification"
    _possibleOutputs = MraOutputs

    def _defineParams(self, form):
        self._defineInputParams(form)
        form.addParam("numberOfClasses", params.IntParam, default=3, validators=[params.GT(0)],
                      label="Number of classes (K)",
                      help="How many references (classes). With a reference given above, it seeds every class; "
                           "otherwise K references are built from random subsets of the subtomograms.")
        self._defineSearchParams(form)
        self._defineComputeParams(form, gpu=True, threads=2)

    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.classifyStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def classifyStep(self):
        self.runCore("align mra", self._commonArgs() + ["--classes", self.numberOfClasses.get()]
                     + self.resumeArgs("run from its last finished iteration"),
                     gpu=True, processes=True)

    def createOutputStep(self):
        inSet = self.inputSubtomos.get()
        rows = self._alignedRows()
        classes = self._createSetOfClassesSubTomograms(self.inputSubtomos)

        def updateItem(item, _row=None):
            found = rows.get(item.getObjId())
            if found is None:
                item._appendItem = False
                return
            row, matrix = found
            self._updateItem(item, row, matrix)
            item.setClassId(int(row[T.CLASS]))

        def updateClass(cls):
            rep = cls.getRepresentative()
            rep.setFileName(self._getExtraPath(f"class_{cls.getObjId():03d}.mrc"))
            rep.setSamplingRate(inSet.getSamplingRate())

        classes.classifyItems(updateItemCallback=updateItem, updateClassCallback=updateClass)
        self._defineOutputs(**{MraOutputs.classes.name: classes})
        self._defineSourceRelation(self.inputSubtomos, classes)

    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [("Class averages (central slices)", self._getExtraPath("gallery.png"))]

    def _summary(self):
        m = self.readMetrics()
        if not m:
            return ["Output not ready yet."]
        sizes = m.get("class_sizes", {})
        return [f"{m.get('n_particles', '?')} subtomograms in {self.numberOfClasses.get()} classes; sizes "
                + ", ".join(f"class {k}: {v}" for k, v in sizes.items()) + "."]

    def _methods(self):
        m = self.readMetrics()
        if not m:
            return []
        return [f"Subtomograms were classified into {self.numberOfClasses.get()} classes by multi-reference "
                "alignment with CryoMine (missing-wedge constrained correlation, Förster et al. 2008)."]
