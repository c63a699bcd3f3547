"""The base of every CryoMine protocol: running the core's command line through ``runJob``.

Running the core as a command (rather than as Python inside the protocol) is what lets Scipion
apply its GPU slots (``CUDA_VISIBLE_DEVICES=%(GPU)s``) and submit the work to a cluster queue.
"""

import json
import os
import shlex
import shutil

from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import params
from pyworkflow.protocol.constants import STEPS_SERIAL
from tomo.protocols import ProtTomoBase

from cryomine_core.tilt_range import RULE, tilt_range_problem
from cryomine_scipion import Plugin
from cryomine_scipion.constants import CHECKPOINT_FILE, METRICS


def gpu_present() -> bool:
    """A cheap check for an NVIDIA GPU on this machine (used for defaults and warnings only)."""
    return shutil.which("nvidia-smi") is not None


class ProtCryomineBase(EMProtocol, ProtTomoBase):
    """Common machinery of CryoMine protocols (not shown in the tree: it has no _label)."""

    _devStatus = BETA
    stepsExecutionMode = STEPS_SERIAL

    # -------------------------- form helpers ---------------------------------
    @staticmethod
    def _defineTiltRangeFallback(form, use: str):
        """The one form group for a tilt range given to items without an acquisition.

        Added by the protocols whose core command reads the missing wedge (alignment and MRA,
        classifier training, classification's class averages, subdivision's alignment); ``use``
        says what the range is used for in this protocol (one sentence for the help).
        """
        form.addParam("tiltRangeMissing", params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label="Give a tilt range for items without one?",
                      help="Subtomograms imported without an acquisition carry no tilt range, and CryoMine refuses "
                           "to guess their missing wedge. Say Yes to give the range here; it is used only for items "
                           f"that have none. {use}")
        form.addParam("tiltMin", params.FloatParam, default=-60.0, condition="tiltRangeMissing",
                      label="Minimum tilt (deg)", help="Lowest tilt angle of items without an acquisition.")
        form.addParam("tiltMax", params.FloatParam, default=60.0, condition="tiltRangeMissing",
                      label="Maximum tilt (deg)", help="Highest tilt angle of items without an acquisition.")

    def _fallbackTiltRange(self):
        """``(min, max)`` for items without an acquisition, or None when the form gives none."""
        if not self.tiltRangeMissing.get():
            return None
        return float(self.tiltMin.get()), float(self.tiltMax.get())

    def _fallbackTiltRangeErrors(self):
        """Validation of the fallback range, by the core's one rule (cryomine_core.tilt_range)."""
        tilt = self._fallbackTiltRange()
        problem = tilt_range_problem(*tilt) if tilt is not None else None
        return [f"Tilt range {tilt[0]:g}..{tilt[1]:g}: {problem} ({RULE})."] if problem else []

    @staticmethod
    def _defineComputeParams(form, gpu: bool = True, threads: int = 2):
        """Add the GPU choice (hidden params Scipion's GUI shows in its header) and threads."""
        if gpu:
            form.addHidden(params.USE_GPU, params.BooleanParam, default=gpu_present(),
                           label="Use GPU for execution",
                           help="Run the CryoMine core on a CUDA GPU. Scipion gives each GPU step the "
                                "GPUs listed below through CUDA_VISIBLE_DEVICES. If you ask for a GPU and none "
                                "is usable, the step fails with a message rather than silently using the CPU.")
            form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="Choose GPU IDs",
                           help="GPU identifiers (as nvidia-smi numbers them), separated by spaces, e.g. '0' "
                                "or '0 1'. Steps that can share their work between processes (align: refine and "
                                "multi-reference classification; classify with CNN; train a classifier, with "
                                "DistributedDataParallel) run one process per listed GPU under torchrun and add "
                                "up the results; the others use the first GPU.")
        form.addParallelSection(threads=threads, mpi=0)

    # -------------------------- running the core ------------------------------
    def resumeArgs(self, what: str = "run") -> list:
        """``--resume`` when an interrupted core command left its checkpoint in the extra folder
        (Scipion's "Continue"), logged; else nothing."""
        if os.path.exists(self._getExtraPath(CHECKPOINT_FILE)):
            self.info(f"Checkpoint found: resuming the interrupted {what}.")
            return ["--resume"]
        return []

    def runCore(self, command: str, arguments: list, gpu: bool = False, processes: bool = False):
        """Run ``cryomine <command> <arguments>`` through ``runJob``.

        Args:
            command: the CLI command group, e.g. ``"extract"`` or ``"simulate subtomograms"``.
            arguments: list of arguments (quoted here).
            gpu: whether this step may use the GPU (then the protocol's GPU choice applies).
            processes: the core command can share its work between processes: with several GPUs
                listed it runs as one process per GPU under ``torchrun``.
        """
        program = Plugin.getCoreCommand()
        args = list(command.split()) + [str(a) for a in arguments]
        if gpu:
            if self.usesGpu():
                gpus = len(self.getGpuList())
                if processes and gpus > 1:
                    several = Plugin.getDistributedCommand(gpus)
                    if several is None:
                        self.warning(f"{gpus} GPUs listed but the core command ({program}) is not "
                                     "'<python> -m cryomine_core', which torchrun needs: running one process on "
                                     "the first GPU.")
                    else:
                        program = several
                        self.info(f"{gpus} GPUs: one process per GPU under torchrun.")
                program = f"CUDA_VISIBLE_DEVICES=%(GPU)s {program}"
                args += ["--device", "cuda"]
            else:
                args += ["--device", "cpu"]
        self.runJob(program, " ".join(shlex.quote(a) for a in args),
                    env=self._coreEnviron(), numberOfThreads=1, numberOfMpi=1)

    def _coreEnviron(self):
        env = Plugin.getEnviron()
        threads = self.numberOfThreads.get() if hasattr(self, "numberOfThreads") else 1
        env["OMP_NUM_THREADS"] = str(max(1, threads or 1))
        return env

    def usesGpu(self) -> bool:
        return bool(getattr(self, params.USE_GPU, None) is not None and getattr(self, params.USE_GPU).get())

    def readMetrics(self, name: str = METRICS) -> dict:
        """The metrics.json the core wrote in this run's extra folder ({} if absent)."""
        path = self._getExtraPath(name)
        try:
            with open(path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}

    # -------------------------- INFO -------------------------------------------
    def _warnings(self):
        warnings = []
        if self.usesGpu() and not gpu_present():
            warnings.append("'Use GPU' is on but no NVIDIA GPU was found on this machine (nvidia-smi is missing). "
                            "This is fine if the job goes to a GPU node of a cluster; otherwise set 'Use GPU' to No.")
        return warnings
