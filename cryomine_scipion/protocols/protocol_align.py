"""Align and average subtomograms: wedge-aware constrained matching, gold-standard half maps, FSC."""

from enum import Enum

from pyworkflow.object import Float, Integer
from pyworkflow.protocol import params
from tomo.objects import AverageSubTomogram, SetOfSubTomograms

from cryomine_core.align.defaults import DEFAULT_ANGULAR_STEP, DEFAULT_ITERATIONS, DEFAULT_MAX_SHIFT
from cryomine_core.io import table as T
from cryomine_core.io.columns import ALIGN_FAILED as FAILED
from cryomine_scipion.constants import INPUT_TABLE, OUTPUT_TABLE
from cryomine_scipion.convert import filePath, readTable, setTransformFromTable, subtomogramsToTable, tableTransforms
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase

#: what to do about the reference's contrast (labels of the form; the core's --contrast / --invert-reference)
REFERENCE_CONTRAST = ["check", "invert", "auto", "off"]


class ProtCryomineAlignBase(ProtCryomineBase):
    """Form sections and conversions shared by the alignment protocols (not in the tree)."""

    _refineCommand = "align refine"

    # -------------------------- DEFINE param functions -----------------------
    def _defineInputParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSubtomos", params.PointerParam, pointerClass="SetOfSubTomograms", important=True,
                      label="Subtomograms",
                      help="Subtomograms to align. Each item's tilt range (from its acquisition) defines its "
                           "missing wedge, which the scoring leaves out of the comparison.")
        form.addParam("inputReference", params.PointerParam, pointerClass="Volume", allowsNull=True,
                      label="Reference (optional)",
                      help="Starting reference of the same box and voxel size. Leave empty for a reference-free "
                           "start: CryoMine then builds the first reference from the data themselves, so no "
                           "external template can bias the result.")
        form.addParam("referenceContrast", params.EnumParam, choices=REFERENCE_CONTRAST, default=0,
                      condition="inputReference", display=params.EnumParam.DISPLAY_HLIST,
                      label="Reference contrast",
                      help="A map from the EMDB or a simulator is usually bright protein on a dark background, while "
                           "subtomograms cut from a tomogram show protein dark: aligned against a reference of the "
                           "opposite contrast the poses are random although the run looks normal. check (default): "
                           "before refining, a sample of particles is matched against the reference and its negative "
                           "at low resolution; the step stops with a message when the negative clearly fits better. "
                           "invert: multiply the reference by -1 (choose this when check told you to). auto: invert "
                           "it when the check says so (logged). off: no check.")
        form.addParam("inputMask", params.PointerParam, pointerClass="VolumeMask", allowsNull=True,
                      label="Mask (optional)",
                      help="Real-space mask (same box) applied to the reference during scoring. Leave empty for a "
                           "soft spherical mask.")
        self._defineTiltRangeFallback(form, "It defines the missing wedge in the alignment scores and averages.")

    def _defineSearchParams(self, form):
        form.addSection(label="Alignment")
        form.addParam("iterations", params.IntParam, default=DEFAULT_ITERATIONS, validators=[params.GT(0)],
                      label="Iterations",
                      help="Rounds of alignment against the current reference followed by a new average. The log "
                           "reports the FSC resolution after each one.")
        form.addParam("angularStep", params.FloatParam, default=DEFAULT_ANGULAR_STEP, validators=[params.Range(1, 60)],
                      label="Global angular step (deg)",
                      help="Spacing of the uniform SO(3) grid of the global rotational search. Local refinement then "
                           "goes below a degree. Smaller steps are slower (the grid grows with 1/step^3).")
        form.addParam("maxShift", params.FloatParam, default=DEFAULT_MAX_SHIFT, validators=[params.GE(0)],
                      label="Maximum shift (voxels)",
                      help="Largest translation allowed from the box centre, in voxels.")
        form.addParam("symmetry", params.StringParam, default="C1", label="Symmetry",
                      help="Point-group symmetry of the particle: C1 (none), Cn or Dn (e.g. C6, D7).")
        form.addParam("lowpass", params.FloatParam, allowsNull=True, default=None,
                      label="Low-pass reference to (Å, optional)",
                      help="Low-pass filter the reference to this resolution before each round. Empty: filter to the "
                           "current gold-standard FSC resolution.")
        form.addParam("seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label="Random seed",
                      help="Seed of the half-set split and the reference-free start.")

    # -------------------------- STEPS functions ------------------------------
    def convertInputStep(self):
        n = subtomogramsToTable(self.inputSubtomos.get(), self._getExtraPath(INPUT_TABLE),
                                tiltRange=self._fallbackTiltRange())
        self.info(f"{n} subtomograms written to {INPUT_TABLE}")

    def _commonArgs(self):
        args = ["--in", self._getExtraPath(INPUT_TABLE), "--out", self._getExtraPath(),
                "--iterations", self.iterations.get(), "--angular-step", self.angularStep.get(),
                "--max-shift", self.maxShift.get(), "--symmetry", self.symmetry.get().strip().upper(),
                "--seed", self.seed.get()]
        if self.inputReference.get() is not None:
            args += ["--reference", filePath(self.inputReference.get())]
            choice = REFERENCE_CONTRAST[self.referenceContrast.get()]
            if choice == "invert":
                args.append("--invert-reference")
            elif choice != "check":
                args += ["--contrast", choice]
        if self.inputMask.get() is not None:
            args += ["--mask", filePath(self.inputMask.get())]
        if self.lowpass.get():
            args += ["--lowpass-angstrom", self.lowpass.get()]
        return args

    def _alignedRows(self):
        """``{item id: (row, Scipion matrix)}`` of the items the core aligned (failed ones left out)."""
        df = readTable(self._getExtraPath(OUTPUT_TABLE))
        if FAILED in df.columns:
            failed = df[FAILED].astype(bool)
            if failed.any():
                self.warning(f"{int(failed.sum())} subtomograms could not be aligned and are left out of the output "
                             "(see the log of the align step).")
            df = df[~failed]
        matrices = tableTransforms(df)
        rows = {}
        for i, (_, row) in enumerate(df.iterrows()):
            rows[int(row[T.ITEM_ID])] = (row, matrices[i])
        return rows

    @staticmethod
    def _updateItem(item, row, matrix):
        setTransformFromTable(item, matrix)
        if T.SCORE in row:
            item._cmScore = Float(float(row[T.SCORE]))
        if T.HALF_SET in row:
            item._cmHalfSet = Integer(int(row[T.HALF_SET]))

    # -------------------------- INFO functions -------------------------------
    def _validate(self):
        errors = self._fallbackTiltRangeErrors()
        subtomos = self.inputSubtomos.get()
        if subtomos is None or subtomos.getSize() == 0:
            errors.append("The input set of subtomograms is empty.")
            return errors
        box, rate = subtomos.getDim(), subtomos.getSamplingRate()
        for label, pointer in (("Reference", self.inputReference), ("Mask", self.inputMask)):
            vol = pointer.get()
            if vol is None:
                continue
            if vol.getDim() != box:
                errors.append(f"{label} box {vol.getDim()} differs from the subtomograms' {box}: resize it (e.g. with "
                              "xmipp3 - crop/resize volumes) to the same box first.")
            if vol.getSamplingRate() and rate and abs(vol.getSamplingRate() - rate) > 1e-3 * rate:
                errors.append(f"{label} voxel size {vol.getSamplingRate():.3f} Å differs from the subtomograms' "
                              f"{rate:.3f} Å: resample it to the same voxel size first.")
        sym = (self.symmetry.get() or "").strip().upper()
        if not (len(sym) >= 2 and sym[0] in "CD" and sym[1:].isdigit() and int(sym[1:]) >= 1):
            errors.append(f"Symmetry '{self.symmetry.get()}' is not understood: use C1, Cn or Dn (e.g. C6, D2).")
        return errors

    def _citations(self):
        return ["Forster2008", "Xu2012"]


class AlignOutputs(Enum):
    subtomograms = SetOfSubTomograms
    average = AverageSubTomogram


class ProtCryomineAlign(ProtCryomineAlignBase):
    """Align subtomograms to a common reference and average them, with gold-standard half maps.

    Scoring is constrained correlation over the Fourier region both volumes observed (Förster et
    al. 2008; Xu, Beck and Alber 2012): each subtomogram's missing wedge comes from its tilt range,
    so the wedge itself never drives the alignment. The search is global over a uniform grid of
    rotations, each with an exhaustive search over all shifts up to the maximum, followed by local
    refinement below a degree and a voxel. Without a reference the first one is built from the data
    (reference-free). The set is split into two halves refined separately (if they settle in
    different frames, the second is registered onto the first, as the log says); their FSC gives
    the resolution at 0.143 (and 0.5), and the final average is wedge-compensated (Fourier weighting by coverage).

    Outputs: the subtomograms with their transforms in Scipion's convention (RELION and Dynamo
    protocols can continue from them) and the average with its two half maps. "Analyze results"
    shows the FSC curve, central slices of the average and the orientation distribution.

    A checkpoint is written after every iteration: if the run stops, "Continue" resumes from the
    last finished iteration to the result an uninterrupted run gives.
    """

    _label = "align and average"
    _possibleOutputs = AlignOutputs

    def _defineParams(self, form):
        self._defineInputParams(form)
        self._defineSearchParams(form)
        self._defineComputeParams(form, gpu=True, threads=2)

    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.alignStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def alignStep(self):
        self.runCore(self._refineCommand, self._commonArgs() + self.resumeArgs("run from its last finished iteration"),
                     gpu=True, processes=True)

    def createOutputStep(self):
        inSet = self.inputSubtomos.get()
        rows = self._alignedRows()
        outSet = self._createSetOfSubTomograms()
        outSet.copyInfo(inSet)
        ext = self.inputSubtomos.getExtended() or ""
        if outSet.getCoordinates3D() is None and "." in ext:
            # one class ("classes.N") keeps no coordinates pointer; take its set of classes' images' one, without
            # which the output's coordinates cannot be linked to their tomograms (iterSubtomos, exports)
            classes = getattr(self.inputSubtomos.getObjValue(), ext.split(".")[0], None)
            images = classes.getImages() if hasattr(classes, "getImages") else None
            if images is not None and images.getCoordinates3D() is not None:
                outSet.setCoordinates3D(images.getCoordinates3D())

        def update(item, _row=None):
            found = rows.get(item.getObjId())
            if found is None:
                item._appendItem = False
                return
            self._updateItem(item, *found)

        outSet.copyItems(inSet, updateItemCallback=update)
        average = AverageSubTomogram()
        average.setFileName(self._getExtraPath("average.mrc"))
        average.setSamplingRate(inSet.getSamplingRate())
        average.setHalfMaps([self._getExtraPath("half1.mrc"), self._getExtraPath("half2.mrc")])
        self._defineOutputs(**{AlignOutputs.subtomograms.name: outSet, AlignOutputs.average.name: average})
        self._defineSourceRelation(self.inputSubtomos, outSet)
        self._defineSourceRelation(self.inputSubtomos, average)

    def resultPlots(self):
        """Figures the core wrote, as (title, path), for the viewer."""
        return [("FSC of the half maps", self._getExtraPath("fsc.png")),
                ("Central slices of the average", self._getExtraPath("slices.png")),
                ("Orientation distribution", self._getExtraPath("orientations.png"))]

    def _summary(self):
        m = self.readMetrics()
        if not m:
            return ["Output not ready yet."]
        lines = [f"{m.get('n_particles', '?')} subtomograms aligned in {self.iterations.get()} iterations "
                 f"({'reference-free start' if self.inputReference.get() is None else 'from the given reference'}).",
                 f"Gold-standard FSC resolution: {m.get('resolution_0143_A', float('nan')):.1f} Å at 0.143, "
                 f"{m.get('resolution_05_A', float('nan')):.1f} Å at 0.5."]
        if m.get("n_failed"):
            lines.append(f"WARNING: {m['n_failed']} subtomograms could not be aligned (see the log); they are left "
                         "out of the output.")
        if m.get("warning"):
            lines.append(f"WARNING: {m['warning']}")
        return lines

    def _methods(self):
        m = self.readMetrics()
        if not m:
            return []
        return [f"{m.get('n_particles')} subtomograms were aligned and averaged with CryoMine using missing-wedge "
                f"constrained correlation (Förster et al. 2008; Xu et al. 2012); the gold-standard FSC resolution "
                f"was {m.get('resolution_0143_A', float('nan')):.1f} Å (FSC 0.143)."]
