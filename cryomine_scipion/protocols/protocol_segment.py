"""Segment tomograms with a trained U-Net and group the predicted voxels into objects."""

import os
import re
from enum import Enum

from pyworkflow.object import Float, Integer, String
from pyworkflow.protocol import params
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D, SetOfCoordinates3D, SetOfTomoMasks, TomoMask

from cryomine_core.io import table as T
from cryomine_core.io.columns import SOLIDITY, VOXELS
from cryomine_scipion.constants import SEGMENT_OBJECTS_DIR, SEGMENT_PREDICTION_DIR
from cryomine_scipion.convert import filePath, fileStem, readTable
from cryomine_scipion.plots import writeLabelOverlay
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase


class SegmentOutputs(Enum):
    labelMasks = SetOfTomoMasks
    coordinates = SetOfCoordinates3D


class ProtCryomineSegment(ProtCryomineBase):
    """Segment whole tomograms with a trained U-Net, then find the objects.

    1. Every voxel gets a class (tiled inference with overlap blending, so memory stays bounded on
       large tomograms; CPU or GPU).
    2. The voxels of object classes are grouped into objects: connected components, and
       components that are not convex (solidity below a threshold, e.g. two touching particles) are
       split into convex parts by a distance-transform watershed; objects outside the size limits
       are dropped. Classes such as membranes are segmented but not split into objects.
    Outputs: the label maps (tomo masks), the object centres as coordinates (all objects, class as
    group id, and one set per class, ready for extraction) and counts per class per tomogram in the
    summary.
    """

    _label = "segment tomograms"
    _possibleOutputs = SegmentOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms", help="Tomograms to segment, at the voxel size the model was trained at.")
        form.addParam("inputModel", params.PointerParam, pointerClass="CryomineModel", important=True,
                      label="Trained segmenter", help="Output of 'train segmenter'.")
        form.addSection(label="Objects")
        form.addParam("minSolidity", params.FloatParam, default=0.8, validators=[params.Range(0.0, 1.0)],
                      label="Split components less convex than",
                      help="Solidity = volume / convex-hull volume. Components below it (e.g. two touching "
                           "particles) are split into convex parts by a distance-transform watershed.")
        form.addParam("minVoxels", params.IntParam, default=8, validators=[params.GE(1)],
                      label="Smallest object (voxels)", help="Objects with fewer voxels are dropped as noise.")
        form.addParam("minSizeFraction", params.FloatParam, default=0.1, validators=[params.Range(0.0, 1.0)],
                      label="Smallest object (fraction of its class)",
                      help="Objects smaller than this fraction of their class's typical volume (measured on the "
                           "training labels) are dropped: specks of noise voted into a large class (default 0.1, "
                           "as on the command line; on simulated tomograms it removed most such false positives). "
                           "0: off.")
        form.addParam("maxVoxels", params.IntParam, allowsNull=True, default=None, label="Largest object (voxels)",
                      help="Objects with more voxels are dropped (empty: no limit).")
        form.addParam("boxSize", params.IntParam, default=40, validators=[params.GT(3)],
                      label="Box size of the coordinates (voxels)",
                      help="Box size recorded with the output coordinates, the default for extraction.")
        form.addParam("tile", params.IntParam, default=256, validators=[params.GT(15)],
                      expertLevel=params.LEVEL_ADVANCED, label="Tile size (voxels)",
                      help="Largest tile processed at once; lower it if memory runs out. The result does not "
                           "depend on it.")
        self._defineComputeParams(form, gpu=True, threads=2)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.predictStep, needsGPU=True)
        self._insertFunctionStep(self.objectsStep, needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- STEPS functions ------------------------------
    def _tomoFiles(self):
        return [filePath(t) for t in self.inputTomograms.get().iterItems(orderBy="id")]

    def predictStep(self):
        self.runCore("segment predict", ["--model", self.inputModel.get().getPath(), "--tomograms",
                                         *self._tomoFiles(), "--out", self._getExtraPath(SEGMENT_PREDICTION_DIR),
                                         "--tile", self.tile.get()], gpu=True)

    def objectsStep(self):
        tomos = self._tomoFiles()
        probs = [self._getExtraPath(SEGMENT_PREDICTION_DIR, "probabilities", fileStem(t) + ".mrc") for t in tomos]
        args = ["--probabilities", *probs, "--classes", self._getExtraPath(SEGMENT_PREDICTION_DIR, "segmenter.json"),
                "--tomograms", *tomos, "--out", self._getExtraPath(SEGMENT_OBJECTS_DIR),
                "--min-solidity", self.minSolidity.get(), "--min-voxels", self.minVoxels.get(),
                "--min-size-fraction", self.minSizeFraction.get()]
        if self.maxVoxels.get():
            args += ["--max-voxels", self.maxVoxels.get()]
        self.runCore("segment objects", args)

    def createOutputStep(self):
        tomos = {fileStem(t.getFileName()): t.clone() for t in self.inputTomograms.get().iterItems()}
        rate = self.inputTomograms.get().getSamplingRate()
        masks = self._createSet(SetOfTomoMasks, "tomomasks%s.sqlite", "labels")
        masks.setSamplingRate(rate)
        for stem, tomo in tomos.items():
            mask = TomoMask()
            mask.setLocation(self._getExtraPath(SEGMENT_OBJECTS_DIR, "classes", stem + ".mrc"))
            mask.setSamplingRate(rate)
            mask.setOrigin()
            mask.setTsId(tomo.getTsId())
            mask.setVolName(tomo.getFileName())
            masks.append(mask)
            writeLabelOverlay(tomo.getFileName(), mask.getFileName(),
                              self._getExtraPath(SEGMENT_OBJECTS_DIR, f"overlay_{stem}.png"), self._classNames())
        self._defineOutputs(**{SegmentOutputs.labelMasks.name: masks})
        self._defineSourceRelation(self.inputTomograms, masks)

        objects = self._getExtraPath(SEGMENT_OBJECTS_DIR, "objects.star")
        if not os.path.exists(objects):  # the core writes no table when it found nothing
            self.warning("No object was found in any tomogram (see the overlays in the results): only the label "
                         "maps are output. Train the segmenter on more annotated boxes or for more epochs.")
            return
        df = readTable(objects, require=(T.TOMO, *T.COORDS))
        byClass = {"": df}
        byClass.update({str(name): group for name, group in df.groupby(T.CLASS_NAME)})
        for name, rows in byClass.items():
            coords = self._createSetOfCoordinates3D(self.inputTomograms, re.sub(r"\W+", "_", name))
            coords.setSamplingRate(rate)
            coords.setBoxSize(self.boxSize.get())
            for _, row in rows.iterrows():
                coord = Coordinate3D()
                coord.setVolume(tomos[fileStem(row[T.TOMO])])
                coord.setPosition(*(float(row[c]) for c in T.COORDS), BOTTOM_LEFT_CORNER)
                coord.setGroupId(int(row[T.CLASS]))
                coord.setScore(float(row[T.SCORE]))
                coord._cmClassName = String(str(row[T.CLASS_NAME]))
                coord._cmVoxels = Integer(int(row[VOXELS]))
                coord._cmSolidity = Float(float(row[SOLIDITY]))
                coords.append(coord)
            outName = SegmentOutputs.coordinates.name + (f"_{re.sub(r'[^A-Za-z0-9]+', '_', name)}" if name else "")
            self._defineOutputs(**{outName: coords})
            self._defineSourceRelation(self.inputTomograms, coords)

    def _classNames(self):
        import json

        path = self._getExtraPath(SEGMENT_PREDICTION_DIR, "segmenter.json")
        if not os.path.exists(path):
            return {}
        with open(path) as fh:
            info = json.load(fh)
        return {int(v): n for v, n in zip(info.get("class_values", []), info.get("class_names", []))}

    # -------------------------- INFO functions -------------------------------
    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [(f"Segmentation of {fileStem(t)}",
                 self._getExtraPath(SEGMENT_OBJECTS_DIR, f"overlay_{fileStem(t)}.png")) for t in self._tomoFiles()]

    def _validate(self):
        errors = []
        tomos, model = self.inputTomograms.get(), self.inputModel.get()
        if tomos is not None and tomos.getSize() == 0:
            errors.append("The set of tomograms is empty.")
        if model is not None and model.getArchitecture() != "unet3d":
            errors.append(f"The model is a {model.getArchitecture()} classifier of subtomograms, not a segmenter: "
                          "give the output of 'train segmenter'.")
        if tomos is not None and model is not None and model.getSamplingRate():
            rate = tomos.getSamplingRate()
            if rate and abs(rate - model.getSamplingRate()) > 0.02 * model.getSamplingRate():
                errors.append(f"The tomograms have {rate:.2f} Å/voxel but the segmenter was trained at "
                              f"{model.getSamplingRate():.2f} Å/voxel: resample the tomograms or retrain.")
        return errors

    def _summary(self):
        counts_path = self._getExtraPath(SEGMENT_OBJECTS_DIR, "counts.json")
        if not os.path.exists(counts_path):
            return ["Output not ready yet."]
        import json

        with open(counts_path) as fh:
            counts = json.load(fh)
        return [f"{tomo}: " + ", ".join(f"{c} {n}" for n, c in per.items()) for tomo, per in counts.items()]

    def _methods(self):
        return ["Tomograms were segmented with a 3-D U-Net in CryoMine; predicted object voxels were grouped into "
                "convex objects (connected components split by a distance-transform watershed)."]

    def _citations(self):
        return ["Chen2017"]
