"""Train a CNN classifier of subtomograms (DSRF3D, DSRF3D-v2, RB3D, CB3D; Che et al. 2018)."""

import re
from enum import Enum

from pyworkflow.protocol import params

from cryomine_scipion.constants import INPUT_TABLE
from cryomine_scipion.convert import labelledSubtomogramsToTable
from cryomine_scipion.objects import CryomineModel
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

# new architectures go at the end: a saved project stores the index
ARCHITECTURES = ["dsrf3d-v2", "dsrf3d", "rb3d", "cb3d", "compact3d", "hybrid3d"]
FROM_CLASSES, FROM_SETS = 0, 1
BALANCE = ["none", "loss", "sample"]
RECIPES = ["subtomo", "paper"]
AUGMENT = ["recipe default", "wedge", "z", "so3", "none"]
NORMALISE = ["recipe default", "zscore", "whiten"]
MODEL_FILE = "model.pt"


class TrainOutputs(Enum):
    model = CryomineModel


class ProtCryomineTrainClassifier(ProtCryomineBase):
    """Train a 3-D CNN that sorts subtomograms into known classes (Che et al. 2018).

    Labelled examples come either from a set of classes (e.g. the true classes of CryoMine's
    simulator, or classes from another classification you trust) or from several sets of
    subtomograms, one per class, named after the sets. The default recipe ("subtomo") is made for a
    few hundred labelled subtomograms per class: augmentation that keeps the missing wedge, AdamW
    with warm-up and cosine decay, label smoothing, test-time augmentation, 40 epochs. The paper's
    recipe (SGD with Nesterov momentum, learning rate 0.005, batch 64, 20 epochs, early stop after
    5) stays available. 80/20 train/test split with 20 % of training kept for validation. A
    checkpoint is written every epoch: if the run stops, "Continue" resumes from it.

    Output: a trained model that records its architecture, box, voxel size and class names, for
    "classify with CNN". "Analyze results" shows the training curves and the confusion matrix.
    """

    _label = "train CNN classifier"
    _possibleOutputs = TrainOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputKind", params.EnumParam, choices=["a set of classes", "one set per class"],
                      default=FROM_CLASSES, display=params.EnumParam.DISPLAY_HLIST, label="Labelled examples from",
                      help="'a set of classes': each class of a SetOfClassesSubTomograms is one label (its name is "
                           "the class label, or classN). 'one set per class': pick several SetOfSubTomograms; each "
                           "set is one class, named after the set's label.")
        form.addParam("inputClasses", params.PointerParam, pointerClass="SetOfClassesSubTomograms",
                      condition=f"inputKind=={FROM_CLASSES}", allowsNull=True, label="Classes",
                      help="Classes whose members are the labelled training examples.")
        form.addParam("inputSets", params.MultiPointerParam, pointerClass="SetOfSubTomograms",
                      condition=f"inputKind=={FROM_SETS}", allowsNull=True, label="Sets (one per class)",
                      help="One SetOfSubTomograms per class. Give each a clear label in the project (right click > "
                           "Edit): it becomes the class name.")
        form.addParam("classNames", params.StringParam, default="", condition=f"inputKind=={FROM_SETS}",
                      label="Class names (optional)",
                      help="One name per set above, in the same order, separated by spaces (e.g. 'ribosome "
                           "chaperonin apoferritin'). Empty: each set's label in the project.")
        self._defineTiltRangeFallback(form, "The 'subtomo' recipe's augmentation and test-time augmentation use "
                                            "its missing wedge (-60..60 is assumed when no item has one).")

        form.addSection(label="Network")
        form.addParam("architecture", params.EnumParam, choices=ARCHITECTURES, default=ARCHITECTURES.index("compact3d"),
                      label="Architecture",
                      help="compact3d (default) is the network that learns from a few hundred labelled "
                           "subtomograms per class; the paper's networks are made for thousands per class and a GPU "
                           "(DSRF3D-v2 stayed at chance level for the first 100 steps on 900 subtomograms, where "
                           "compact3d was well above it after 28). "
                           "dsrf3d-v2: the best accuracy/speed trade-off of Che et al. (2018), ~18 M parameters at "
                           "40^3. dsrf3d: the first version (Xu et al. 2017). rb3d: residual blocks (~263 M "
                           "parameters at 40^3, memory hungry). cb3d: C3D-like, ~61 M parameters, slowest. "
                           "compact3d: CryoMine's small network with global pooling (~0.4 M parameters, any box). "
                           "hybrid3d: compact3d beside a learned layer on rotation-invariant spherical-harmonic "
                           "features of each subtomogram (a turned particle gives the same features), about 1.3x "
                           "slower to train; on held-out complexes it was above compact3d in most cells of the "
                           "learning curve but not above the rotation-invariant SVM (see the README). "
                           "The first fully connected layer of the paper's networks follows the box size.")
        form.addParam("recipe", params.EnumParam, choices=RECIPES, default=0, label="Training recipe",
                      display=params.EnumParam.DISPLAY_HLIST,
                      help="subtomo (default): made for a few hundred labelled subtomograms per class. Every batch "
                           "is augmented without showing the network data the tomogram lacks: the 180-degree "
                           "rotations that keep the missing wedge, +-1 voxel shifts, contrast and noise jitter. "
                           "AdamW (learning rate 0.003, weight decay 0.05), one warm-up epoch then cosine decay, label "
                           "smoothing 0.1, batch 32, 40 epochs; the epoch with the best validation accuracy is kept; "
                           "prediction averages the wedge-preserving rotations (test-time augmentation). "
                           "paper: Che et al. (2018) unchanged (SGD with Nesterov momentum 0.9, learning rate 0.005, "
                           "batch 64, 20 epochs, early stop after 5 without validation-loss improvement, no "
                           "augmentation). Leave the settings below empty to use the recipe's values.")
        form.addParam("augment", params.EnumParam, choices=AUGMENT, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Rotations of the augmentation",
                      help="recipe default: wedge for subtomo, none for paper. wedge: only the exact 180-degree "
                           "rotations that keep the missing wedge. z: any angle about the beam axis (wedge "
                           "re-imposed) plus those. so3: any rotation, wedge re-imposed. none: no augmentation.")
        form.addParam("normalise", params.EnumParam, choices=NORMALISE, default=0, expertLevel=params.LEVEL_ADVANCED,
                      label="Input normalisation",
                      help="recipe default: zscore for both recipes. zscore: zero mean and unit variance per "
                           "subtomogram. whiten: each subtomogram's radial power spectrum is flattened first, so the "
                           "network learns less of the noise spectrum of one acquisition (defocus, weighted "
                           "back-projection or Fourier reconstruction); it helped at SNR 0.1 when training and test "
                           "came from different acquisitions, and hurt at high SNR. Prediction repeats the choice "
                           "(it is stored in the model).")
        form.addParam("epochs", params.IntParam, allowsNull=True, label="Epochs (max)",
                      help="Most passes over the training set. Empty: the recipe's (subtomo 40, paper 20).")
        form.addParam("patience", params.IntParam, allowsNull=True, label="Early stop after (epochs)",
                      help="Stop when the validation score has not improved for this many epochs (0: never); the "
                           "best epoch's weights are kept either way. Empty: the recipe's (subtomo never, since its "
                           "cosine schedule needs the last epochs; paper 5).")
        form.addParam("batchSize", params.IntParam, allowsNull=True, label="Batch size",
                      help="Subtomograms per optimisation step. Empty: the recipe's (subtomo 32, paper 64). Lower "
                           "it if the GPU runs out of memory.")
        form.addParam("learningRate", params.FloatParam, allowsNull=True,
                      label="Learning rate",
                      help="Peak learning rate. Empty: the recipe's (subtomo 0.003 with AdamW, paper 0.005 with SGD).")
        form.addParam("balance", params.EnumParam, choices=BALANCE, default=1, expertLevel=params.LEVEL_ADVANCED,
                      label="Class balancing",
                      help="none: as the data come. loss: weight the loss by inverse class frequency. sample: draw "
                           "classes equally often. Use balancing when class sizes differ a lot.")
        form.addParam("testFraction", params.FloatParam, default=0.2, validators=[params.Range(0.0, 0.9)],
                      expertLevel=params.LEVEL_ADVANCED, label="Test fraction",
                      help="Fraction of each class held out for the final test accuracy.")
        form.addParam("valFraction", params.FloatParam, default=0.2, validators=[params.Range(0.01, 0.9)],
                      expertLevel=params.LEVEL_ADVANCED, label="Validation fraction",
                      help="Fraction of the training part kept for validation (early stopping and calibration of "
                           "the confidence).")
        form.addParam("seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seed of the split, the initial weights and the sampling.")
        self._defineComputeParams(form, gpu=True, threads=2)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- STEPS functions ------------------------------
    def _groups(self):
        if self.inputKind.get() == FROM_CLASSES:
            classes = self.inputClasses.get()
            groups = []
            for cls in classes.iterItems(orderBy="id"):
                name = cls.getObjLabel() or f"class{cls.getObjId()}"
                groups.append((name, [item.clone() for item in cls.iterItems()]))
            return groups
        groups = []
        given = self._givenClassNames()
        for i, pointer in enumerate(self.inputSets or [], start=1):
            subtomos = pointer.get()
            name = given[i - 1] if given else re.sub(r"\s+", "_", subtomos.getObjLabel() or "") or f"class{i}"
            groups.append((name, [item.clone() for item in subtomos.iterItems()]))
        return groups

    def _givenClassNames(self) -> list:
        return str(self.classNames.get() or "").split()

    def convertInputStep(self):
        counts = labelledSubtomogramsToTable(self._groups(), self._getExtraPath(INPUT_TABLE),
                                             tiltRange=self._fallbackTiltRange())
        self.info("Labelled examples per class: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))

    def trainStep(self):
        args = ["--in", self._getExtraPath(INPUT_TABLE), "--out", self._getExtraPath(),
                "--model", ARCHITECTURES[self.architecture.get()], "--recipe", RECIPES[self.recipe.get()],
                "--balance", BALANCE[self.balance.get()], "--test-fraction", self.testFraction.get(),
                "--val-fraction", self.valFraction.get(), "--seed", self.seed.get()]
        for flag, param in (("--epochs", self.epochs), ("--patience", self.patience),
                            ("--batch-size", self.batchSize), ("--lr", self.learningRate)):
            if param.get() is not None:
                args += [flag, param.get()]
        if self.augment.get():
            args += ["--augment", AUGMENT[self.augment.get()]]
        if self.normalise.get():
            args += ["--normalise", NORMALISE[self.normalise.get()]]

        args += self.resumeArgs("training")
        self.runCore("classify train", args, gpu=True, processes=True)

    def createOutputStep(self):
        m = self.readMetrics()
        box = m.get("box") or [0]
        box = box if isinstance(box, list) else [box]
        model = CryomineModel(path=self._getExtraPath(MODEL_FILE), architecture=m.get("model", ARCHITECTURES[
            self.architecture.get()]), boxSize=int(box[0]), samplingRate=float(m.get("voxel_size") or 0.0),
            classNames=m.get("class_names", []))
        self._defineOutputs(**{TrainOutputs.model.name: model})
        source = self.inputClasses if self.inputKind.get() == FROM_CLASSES else None
        if source is not None:
            self._defineSourceRelation(source, model)

    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [("Training curves", self._getExtraPath("training_curves.png")),
                ("Confusion matrix (validation and test)", self._getExtraPath("confusion.png"))]

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        # the recipe settings may be left empty (the recipe's value); when given they must be positive
        errors = [f"{label} must be positive (or empty for the recipe's value)."
                  for label, param in (("Epochs", self.epochs), ("Batch size", self.batchSize),
                                       ("Learning rate", self.learningRate))
                  if param.get() is not None and param.get() <= 0]
        if self.patience.get() is not None and self.patience.get() < 0:
            errors.append("Early stop after (epochs) must be >= 0 (0: never).")
        errors += self._fallbackTiltRangeErrors()
        if self.inputKind.get() == FROM_CLASSES:
            classes = self.inputClasses.get()
            if classes is None:
                return ["Choose the input classes."]
            sizes = [cls.getSize() for cls in classes.iterItems()]
            if len([s for s in sizes if s > 0]) < 2:
                errors.append("Training needs at least two non-empty classes.")
        else:
            sets = [p.get() for p in (self.inputSets or []) if p.get() is not None]
            if len(sets) < 2:
                errors.append("Give at least two sets of subtomograms (one per class).")
            dims = {s.getDim() for s in sets}
            if len(dims) > 1:
                errors.append(f"The sets have different box sizes {sorted(dims)}: extract or resize them to one box.")
            rates = {round(s.getSamplingRate() or 0, 3) for s in sets}
            if len(rates) > 1:
                errors.append(f"The sets have different voxel sizes {sorted(rates)} Å: rescale them to one.")
            names = self._givenClassNames()
            if names and len(names) != len(self.inputSets or []):
                errors.append(f"'Class names' gives {len(names)} name(s) for {len(self.inputSets or [])} sets: give "
                              "one per set, in order, or leave it empty.")
            elif len(set(names)) != len(names):
                errors.append("'Class names' repeats a name: give each set its own.")
        return errors

    def _summary(self):
        m = self.readMetrics()
        if not m or TrainOutputs.model.name not in self._outputs:
            return ["Output not ready yet."]
        lines = [f"{ARCHITECTURES[self.architecture.get()]} trained on {len(m.get('class_names', []))} classes "
                 f"({', '.join(m.get('class_names', []))})."]
        if m.get("test_accuracy") is not None:
            lines.append(f"Test accuracy {m['test_accuracy'] or float('nan'):.3f}; validation accuracy "
                         f"{m.get('val_accuracy') or float('nan'):.3f} (best epoch {m.get('best_epoch', '?')} of "
                         f"{m.get('epochs_run', '?')}).")
        if m.get("warning"):
            lines.append(f"WARNING: {m['warning']}")
        return lines

    def _methods(self):
        m = self.readMetrics()
        if not m:
            return []
        return [f"A {ARCHITECTURES[self.architecture.get()]} network (Che et al. 2018) was trained with CryoMine "
                f"(recipe {RECIPES[self.recipe.get()]}) on {len(m.get('class_names', []))} classes of subtomograms; "
                "test accuracy "
                f"{m.get('test_accuracy') or float('nan'):.3f}."]

    def _citations(self):
        return ["Che2018", "Xu2017"]
