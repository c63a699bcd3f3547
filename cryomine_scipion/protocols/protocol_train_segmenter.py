"""Train a voxel segmenter (3-D U-Net) of tomograms from a few annotated boxes."""

import json
import os
from enum import Enum

from pyworkflow.protocol import params

from cryomine_core.io.atomic import atomic_write_text
from cryomine_scipion.convert import filePath
from cryomine_scipion.objects import CryomineModel
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

CLASSES_FILE = "classes.json"


class TrainSegmenterOutputs(Enum):
    model = CryomineModel


def maskTomogramPairs(masks, tomograms=None):
    """``[(tomogram file, mask file)]``: masks matched to tomograms by tsId, or to their own volName."""
    byId = {t.getTsId(): filePath(t) for t in tomograms.iterItems()} if tomograms is not None else {}
    pairs, missing = [], []
    for mask in masks.iterItems():
        tomo = byId.get(mask.getTsId()) if byId else mask.getVolName()
        if not tomo:
            missing.append(mask.getTsId() or mask.getFileName())
            continue
        pairs.append((os.path.abspath(tomo), filePath(mask)))
    if missing:
        raise ValueError(f"No tomogram for the label maps {missing}: give the tomograms (matched by tsId).")
    return pairs


class ProtCryomineTrainSegmenter(ProtCryomineBase):
    """Train a 3-D U-Net that labels every voxel of a tomogram from a few annotated boxes.

    The labels are tomo masks (label maps: 0 background, 1, 2, ... the classes) of the same size
    as their tomograms, e.g. drawn in a segmentation tool or made by CryoMine's simulator. Only a
    handful of boxes (cubic sub-volumes) around labelled objects is used for training, as in
    EMAN2's tomoseg or DeepFinder: annotating about ten boxes is enough to start. A checkpoint is
    written every epoch, so "Continue" resumes an interrupted training. Output: a trained model for
    "segment tomograms". "Analyze results" shows the training curves.
    """

    _label = "train segmenter"
    _possibleOutputs = TrainSegmenterOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMasks", params.PointerParam, pointerClass="SetOfTomoMasks", important=True,
                      label="Label maps (tomo masks)",
                      help="Annotated label maps: 0 for background and one integer per class. Unannotated regions "
                           "are not used: training boxes are placed on labelled objects.")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", allowsNull=True,
                      label="Tomograms (optional)",
                      help="The tomograms the label maps annotate, matched by tsId. Leave empty to use the tomogram "
                           "each mask records (its volName).")
        form.addParam("classNames", params.StringParam, default="", label="Class names (optional)",
                      help="Names of the label values 1, 2, 3, ... separated by spaces, e.g. 'ribosome proteasome "
                           "membrane'. Empty: the names the simulator recorded next to the masks, else class1, "
                           "class2, ...")
        form.addParam("stuffClasses", params.StringParam, default="membrane", label="Classes not split into objects",
                      help="Class names that are segmented but not grouped into separate objects (e.g. membrane), "
                           "separated by spaces.")
        form.addSection(label="Training")
        form.addParam("nBoxes", params.IntParam, default=10, validators=[params.GT(0)],
                      label="Annotated boxes", help="How many boxes around labelled objects to train from (about 10).")
        form.addParam("boxSize", params.IntParam, default=64, validators=[params.GT(15)], label="Box size (voxels)",
                      help="Edge of the annotated boxes.")
        form.addParam("patch", params.IntParam, default=48, validators=[params.GT(7)], label="Patch size (voxels)",
                      help="Edge of the random training patches cut from the boxes (at most the box size).")
        form.addParam("epochs", params.IntParam, default=40, validators=[params.GT(0)], label="Epochs (max)",
                      help="Most training epochs; training stops earlier when the validation loss stalls.")
        form.addParam("patchesPerEpoch", params.IntParam, default=64, validators=[params.GT(0)],
                      expertLevel=params.LEVEL_ADVANCED, label="Patches per epoch",
                      help="Random patches drawn per epoch.")
        form.addParam("width", params.IntParam, default=8, validators=[params.GT(0)],
                      expertLevel=params.LEVEL_ADVANCED, label="Network width",
                      help="U-Net channels at full resolution (doubled at each level).")
        form.addParam("seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seed of the box placement, patches and initial weights.")
        self._defineComputeParams(form, gpu=True, threads=2)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- STEPS functions ------------------------------
    def _classesFile(self, pairs):
        names = (self.classNames.get() or "").split()
        if names:
            path = self._getExtraPath(CLASSES_FILE)
            atomic_write_text(path, json.dumps({str(i): n for i, n in enumerate(names, start=1)}))
            return path
        recorded = os.path.join(os.path.dirname(os.path.dirname(pairs[0][1])), CLASSES_FILE)
        return recorded if os.path.exists(recorded) else None

    def trainStep(self):
        pairs = maskTomogramPairs(self.inputMasks.get(), self.inputTomograms.get())
        args = ["--tomograms", *[t for t, _ in pairs], "--labels", *[m for _, m in pairs],
                "--out", self._getExtraPath(), "--boxes", self.nBoxes.get(), "--box-size", self.boxSize.get(),
                "--patch", min(self.patch.get(), self.boxSize.get()), "--epochs", self.epochs.get(),
                "--patches-per-epoch", self.patchesPerEpoch.get(), "--width", self.width.get(),
                "--seed", self.seed.get(), "--stuff", *(self.stuffClasses.get() or "").split()]
        classes = self._classesFile(pairs)
        if classes:
            args += ["--classes", classes]
        args += self.resumeArgs("training")
        self.runCore("segment train", args, gpu=True)

    def createOutputStep(self):
        m = self.readMetrics()
        rate = float(self.inputMasks.get().getSamplingRate())
        model = CryomineModel(path=self._getExtraPath("model.pt"), architecture="unet3d",
                              boxSize=int(self.patch.get()), samplingRate=rate, classNames=m.get("class_names", []))
        self._defineOutputs(**{TrainSegmenterOutputs.model.name: model})
        self._defineSourceRelation(self.inputMasks, model)

    # -------------------------- INFO functions -------------------------------
    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [("Training curves", self._getExtraPath("training_curves.png"))]

    def _validate(self):
        errors = []
        masks = self.inputMasks.get()
        if masks is not None and masks.getSize() == 0:
            errors.append("The set of label maps is empty.")
        elif masks is not None:
            try:
                maskTomogramPairs(masks, self.inputTomograms.get())
            except ValueError as exc:
                errors.append(str(exc))
        if self.patch.get() and self.boxSize.get() and self.patch.get() > self.boxSize.get():
            errors.append("The patch size cannot exceed the box size.")
        return errors

    def _summary(self):
        m = self.readMetrics()
        if not m:
            return ["Output not ready yet."]
        dice = ", ".join(f"{k}: {v:.2f}" for k, v in (m.get("dice") or {}).items() if v is not None)
        return [f"U-Net trained on {m.get('n_boxes')} boxes for {m.get('epochs_run')} epochs; classes "
                f"{', '.join(m.get('class_names', []))}.", f"Dice on {m.get('dice_on', 'held-out')}: {dice}."]

    def _methods(self):
        m = self.readMetrics()
        if not m:
            return []
        return [f"A 3-D U-Net was trained with CryoMine from {m.get('n_boxes')} annotated boxes to segment "
                f"{', '.join(m.get('class_names', []))}."]

    def _citations(self):
        return ["Chen2017"]
