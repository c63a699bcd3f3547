"""Template-free subdivision: CNN features + clustering + reference-free averages per cluster."""

from enum import Enum

from pyworkflow.object import Float
from pyworkflow.protocol import params
from tomo.objects import SetOfClassesSubTomograms

from cryomine_core.io import table as T
from cryomine_scipion.constants import INPUT_TABLE, OUTPUT_TABLE
from cryomine_scipion.convert import readTable, setTransformFromTable, subtomogramsToTable, tableTransforms
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

FROM_MODEL, UNSUPERVISED, ROTATION_INVARIANT = 0, 1, 2
METHODS = ["gmm", "kmeans"]


class SubdivideOutputs(Enum):
    classes = SetOfClassesSubTomograms


class ProtCryomineSubdivide(ProtCryomineBase):
    """Split a large heterogeneous set of subtomograms into structurally homogeneous clusters,
    without templates (Xu et al. 2017), and average each cluster without a reference.

    Features: the penultimate layer of a CNN trained with "train CNN classifier" (it separates
    shapes in general, so structures absent from its training data form clusters of their own);
    or a fully unsupervised mode (DISCA-like, Zeng et al. 2023: a network trained on its own
    pseudo-labels, re-clustered each round); or rotation-invariant spherical-harmonic features
    (the classic baseline). The features are reduced by PCA and clustered by a Gaussian mixture
    (or k-means) whose number of clusters is chosen by BIC unless you fix it; large sets use
    mini-batch variants with bounded memory. Each cluster is then aligned and averaged
    reference-free (wedge-aware), clusters whose members align poorly can be split, every
    subtomogram is re-assigned to the average it fits best by multi-reference alignment
    (reference-free classification, a few rounds), and clusters whose averages agree are merged.
    "Analyze results" shows the 2-D embedding coloured by cluster, the cluster sizes, the BIC curve
    and a gallery of averages.
    """

    _label = "template-free subdivision"
    _possibleOutputs = SubdivideOutputs

    # -------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSubtomos", params.PointerParam, pointerClass="SetOfSubTomograms", important=True,
                      label="Subtomograms", help="The heterogeneous set to subdivide.")
        form.addParam("featureSource", params.EnumParam, default=FROM_MODEL,
                      choices=["trained CNN", "unsupervised (no labels)", "rotation-invariant (baseline)"],
                      label="Features from",
                      help="trained CNN: the penultimate layer of a model from 'train CNN classifier' (trained on "
                           "other structures is fine). unsupervised: learn features from the data alone (slower). "
                           "rotation-invariant: spherical-harmonic power per shell, the classic baseline.")
        form.addParam("inputModel", params.PointerParam, pointerClass="CryomineModel", allowsNull=True,
                      condition=f"featureSource=={FROM_MODEL}", label="Trained CNN",
                      help="A model of the same box and voxel size as the subtomograms.")
        form.addParam("rounds", params.IntParam, default=3, validators=[params.GT(0)],
                      condition=f"featureSource=={UNSUPERVISED}", label="Unsupervised rounds",
                      help="Rounds of training on the current pseudo-labels followed by re-clustering.")
        form.addParam("epochs", params.IntParam, default=5, validators=[params.GT(0)],
                      condition=f"featureSource=={UNSUPERVISED}", label="Epochs per round",
                      help="Training epochs of each unsupervised round.")
        self._defineTiltRangeFallback(form, "Cluster averages and the reference-free re-assignment compensate "
                                            "this missing wedge.")

        form.addSection(label="Clustering")
        form.addParam("numberOfClusters", params.IntParam, default=0, validators=[params.GE(0)],
                      label="Number of clusters (0 = automatic)",
                      help="0 chooses the number by the Bayesian information criterion (BIC) between 1 and the "
                           "maximum below; any other value fixes it.")
        form.addParam("maxClusters", params.IntParam, default=10, validators=[params.GT(0)],
                      label="Maximum clusters (automatic)", help="Largest number of clusters tried.")
        form.addParam("method", params.EnumParam, choices=["Gaussian mixture", "k-means"], default=0,
                      expertLevel=params.LEVEL_ADVANCED, label="Clustering method",
                      help="Gaussian mixture (diagonal covariances) or k-means on the PCA components.")
        form.addParam("pcaComponents", params.IntParam, default=8, validators=[params.GT(0)],
                      expertLevel=params.LEVEL_ADVANCED, label="PCA components",
                      help="Dimensions kept after PCA before clustering.")

        form.addSection(label="Averages")
        form.addParam("alignClusters", params.BooleanParam, default=True, label="Align each cluster (reference-free)?",
                      help="Yes: align and average the members of each cluster without a reference (the class "
                           "averages are then real structures; slower). No: plain wedge-compensated means of the "
                           "unaligned members (a quick look).")
        form.addParam("alignIterations", params.IntParam, default=3, validators=[params.GT(0)],
                      condition="alignClusters", label="Alignment iterations",
                      help="Refinement iterations per cluster.")
        form.addParam("split", params.BooleanParam, default=False, condition="alignClusters",
                      label="Split poorly aligning clusters?",
                      help="Split a cluster in two when its members align to its average much worse than the "
                           "other clusters' members do to theirs.")
        form.addParam("reassignIterations", params.IntParam, default=5, validators=[params.GE(0)],
                      condition="alignClusters", label="Reference-free classification rounds",
                      help="After clustering, every subtomogram is aligned against ALL cluster averages (missing "
                           "wedge accounted for) and moved to the one it fits best; the averages are then rebuilt "
                           "and this is repeated. Feature clusters are approximate, above all for structures the "
                           "network never saw; this stage (Xu et al. 2017's reference-free classification) is what "
                           "makes the classes homogeneous: on simulated data at SNR 0.1 it raised the adjusted Rand "
                           "index from about 0.3-0.4 to about 0.9 (benchmarks/subdivision.py). Cost: each round "
                           "aligns every subtomogram against every average (seconds per thousand on a GPU, "
                           "minutes on a CPU); the subtomograms are read from disk a chunk at a time, so memory "
                           "does not grow with the set. 0: off.")
        form.addParam("reassignLocal", params.FloatParam, allowsNull=True, default=None,
                      condition="alignClusters and reassignIterations > 0",
                      label="Local search after the first round (degrees, optional)",
                      help="Faster rounds for large sets: the first round aligns every subtomogram to each "
                           "average on its own (global search); later rounds search each average only within "
                           "this angle of the subtomogram's pose for it in the round before (e.g. the angular "
                           "step). Measured on 4 simulated shapes at SNR 0.2 (160 subtomograms, 4 rounds): "
                           "later rounds 2-4x faster, adjusted Rand index 0.93 against 0.98 with the global "
                           "search in every round. Empty (default): the global search in every round.")
        form.addParam("mergeThreshold", params.FloatParam, allowsNull=True, default=0.95,
                      condition="alignClusters", label="Merge clusters whose averages agree above (optional)",
                      help="Merge two clusters when their averages, aligned onto each other and compared at 30 Å, "
                           "agree at least this much. Agreement = their correlation divided by the correlation "
                           "expected for two averages of ONE structure with that much noise (computed from each "
                           "cluster's two half maps): about 1.0 when one structure was split in two clusters, lower "
                           "for different structures. On simulated data (SNR 0.1) clusters of one structure scored "
                           "0.98-1.03 and different structures at most 0.93, hence the default 0.95. Clusters are "
                           "joined by complete linkage (never chained through a third), and the members of merged "
                           "clusters are re-assigned once more. Raise it to keep close conformations apart. Empty: "
                           "never merge.")
        form.addParam("seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seed of the clustering and the alignments.")
        self._defineComputeParams(form, gpu=True, threads=2)

    # -------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.subdivideStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- STEPS functions ------------------------------
    def convertInputStep(self):
        n = subtomogramsToTable(self.inputSubtomos.get(), self._getExtraPath(INPUT_TABLE),
                                tiltRange=self._fallbackTiltRange())
        self.info(f"{n} subtomograms written to {INPUT_TABLE}")

    def subdivideStep(self):
        args = ["--in", self._getExtraPath(INPUT_TABLE), "--out", self._getExtraPath(),
                "--clusters", self.numberOfClusters.get() or "auto", "--max-clusters", self.maxClusters.get(),
                "--method", METHODS[self.method.get()], "--pca-components", self.pcaComponents.get(),
                "--seed", self.seed.get()]
        source = self.featureSource.get()
        if source == FROM_MODEL:
            args += ["--model", self.inputModel.get().getPath()]
        elif source == UNSUPERVISED:
            args += ["--unsupervised", "--rounds", self.rounds.get(), "--epochs", self.epochs.get()]
        else:
            args += ["--features", "rif"]
        if self.alignClusters.get():
            args += ["--align-clusters", "--align-iterations", self.alignIterations.get()]
            if self.split.get():
                args.append("--split")
            if self.reassignIterations.get():
                args += ["--reassign", self.reassignIterations.get()]
                if self.reassignLocal.get() is not None:
                    args += ["--reassign-local", self.reassignLocal.get()]
            if self.mergeThreshold.get() is not None:
                args += ["--merge-threshold", self.mergeThreshold.get()]
        self.runCore("subdivide", args + self.resumeArgs("run from its last finished stage"), gpu=True)

    def createOutputStep(self):
        inSet = self.inputSubtomos.get()
        df = readTable(self._getExtraPath(OUTPUT_TABLE))
        aligned = all(c in df.columns for c in T.ANGLES)
        matrices = tableTransforms(df) if aligned else None
        rows = {int(r[T.ITEM_ID]): (r, None if matrices is None else matrices[i])
                for i, (_, r) in enumerate(df.iterrows())}
        files = self.readMetrics().get("averages", {}).get("files", {})
        classes = self._createSetOfClassesSubTomograms(self.inputSubtomos)

        def updateItem(item, _row=None):
            found = rows.get(item.getObjId())
            if found is None:
                item._appendItem = False
                return
            row, matrix = found
            item.setClassId(int(row[T.CLASS]))
            item._cmScore = Float(float(row[T.SCORE]))
            if matrix is not None:
                setTransformFromTable(item, matrix)

        def updateClass(cls):
            cls.setObjLabel(f"cluster {cls.getObjId()}")
            rep = cls.getRepresentative()
            name = files.get(str(cls.getObjId()))
            if name:
                rep.setFileName(self._getExtraPath(name))
            rep.setSamplingRate(inSet.getSamplingRate())

        classes.classifyItems(updateItemCallback=updateItem, updateClassCallback=updateClass)
        self._defineOutputs(**{SubdivideOutputs.classes.name: classes})
        self._defineSourceRelation(self.inputSubtomos, classes)
        if self.featureSource.get() == FROM_MODEL:
            self._defineSourceRelation(self.inputModel, classes)

    # -------------------------- INFO functions -------------------------------
    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [("2-D embedding coloured by cluster", self._getExtraPath("embedding.png")),
                ("Cluster sizes", self._getExtraPath("sizes.png")),
                ("BIC against the number of clusters", self._getExtraPath("bic.png")),
                ("Cluster averages (central slices)", self._getExtraPath("gallery.png"))]

    def _validate(self):
        errors = self._fallbackTiltRangeErrors()
        subtomos = self.inputSubtomos.get()
        if subtomos is not None and subtomos.getSize() < 2:
            errors.append("Subdivision needs at least two subtomograms.")
        if self.featureSource.get() != FROM_MODEL:
            return errors
        model = self.inputModel.get()
        if model is None:
            errors.append("Choose the trained CNN (or another feature source).")
            return errors
        if model.getArchitecture() == "unet3d":
            errors.append("That model is a tomogram segmenter: give a classifier from 'train CNN classifier'.")
        if subtomos is not None:
            box = subtomos.getDim()
            if box is not None and model.getBoxSize() and tuple(box) != (model.getBoxSize(),) * 3:
                errors.append(f"The subtomograms are {box[0]}x{box[1]}x{box[2]} voxels but the model expects "
                              f"{model.getBoxSize()}^3: re-extract with that box or train a model on this box.")
            rate, modelRate = subtomos.getSamplingRate(), model.getSamplingRate()
            if rate and modelRate and abs(rate - modelRate) > 0.01 * modelRate:
                errors.append(f"The subtomograms have {rate:.2f} Å/voxel, the model {modelRate:.2f}: rescale them "
                              "when extracting, or train a model at this voxel size.")
        return errors

    def _summary(self):
        m = self.readMetrics()
        if not m:
            return ["Output not ready yet."]
        sizes = ", ".join(f"{k}: {v}" for k, v in m.get("cluster_sizes", {}).items())
        lines = [f"{m.get('n')} subtomograms in {m.get('n_clusters')} clusters "
                 f"({'chosen by BIC' if not self.numberOfClusters.get() else 'fixed'}); sizes {sizes}."]
        scores = m.get("vs_input_labels")
        if scores:
            lines.append(f"Against the input class labels: ARI {scores.get('ari', float('nan')):.3f}, "
                         f"NMI {scores.get('nmi', float('nan')):.3f}.")
        return lines

    def _methods(self):
        m = self.readMetrics()
        if not m:
            return []
        return [f"{m.get('n')} subtomograms were subdivided template-free into {m.get('n_clusters')} clusters with "
                "CryoMine (CNN features, PCA and clustering, reference-free averages; Xu et al. 2017)."]

    def _citations(self):
        return ["Xu2017", "Zeng2023"]
