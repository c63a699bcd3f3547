"""One source of defaults for the CLI and the protocols; Scipion's ':mrc' suffix stripped everywhere. No project."""

import pytest

pytest.importorskip("pyworkflow")

from cryomine_core.align.defaults import DEFAULT_ANGULAR_STEP, DEFAULT_ITERATIONS, DEFAULT_MAX_SHIFT  # noqa: E402
from cryomine_core.cli import build_parser  # noqa: E402


def _protocol_defaults(cls):
    from pyworkflow.protocol import Form

    protocol = cls()
    form = Form(protocol)
    protocol._defineParams(form)
    return {name: float(form.getParam(name).default.get()) for name in ("iterations", "angularStep", "maxShift")}


@pytest.mark.parametrize("command", ["refine", "mra"])
def test_cli_and_protocols_share_the_alignment_defaults(command):
    from cryomine_scipion.protocols import ProtCryomineAlign, ProtCryomineMultiRefClassify

    args = build_parser().parse_args(["align", command, "--in", "t.star", "--out", "o"] +
                                     (["--classes", "2"] if command == "mra" else []))
    assert (args.iterations, args.angular_step, args.max_shift) == \
        (DEFAULT_ITERATIONS, DEFAULT_ANGULAR_STEP, DEFAULT_MAX_SHIFT)
    protocol = ProtCryomineAlign if command == "refine" else ProtCryomineMultiRefClassify
    assert _protocol_defaults(protocol) == {"iterations": DEFAULT_ITERATIONS, "angularStep": DEFAULT_ANGULAR_STEP,
                                            "maxShift": DEFAULT_MAX_SHIFT}


@pytest.mark.parametrize("name,expected", [("/d/a.mrc:mrc", "/d/a.mrc"), ("/d/a.mrc", "/d/a.mrc"),
                                           ("/d/st.st:mrcs", "/d/st.st"), ("/d/odd:name.mrc", "/d/odd:name.mrc")])
def test_file_path_strips_only_a_format_suffix(name, expected):
    from tomo.objects import Tomogram

    from cryomine_scipion.convert import filePath

    tomo = Tomogram()
    tomo.setFileName(name)
    assert filePath(tomo) == expected


def test_one_reader_of_the_acquisition_tilt_range():
    from tomo.objects import TomoAcquisition

    from cryomine_scipion.convert import acquisitionTiltRange

    assert acquisitionTiltRange(None) is None
    assert acquisitionTiltRange(TomoAcquisition()) is None  # nothing set
    assert acquisitionTiltRange(TomoAcquisition(angleMin=-54.0, angleMax=60.0)) == (-54.0, 60.0)
    assert acquisitionTiltRange(TomoAcquisition(angleMin=60.0, angleMax=-60.0)) == (60.0, -60.0)  # core refuses it


@pytest.mark.parametrize("protocol", ["ProtCryomineAlign", "ProtCryomineMultiRefClassify", "ProtCryomineClassify",
                                      "ProtCryomineSubdivide", "ProtCryomineTrainClassifier"])
def test_the_tilt_range_fallback_is_offered_where_the_core_reads_a_wedge_and_checked_by_its_rule(protocol):
    import cryomine_scipion.protocols as protocols

    cls = getattr(protocols, protocol)
    from pyworkflow.protocol import Form

    prot = cls()
    form = Form(prot)
    prot._defineParams(form)
    assert form.getParam("tiltRangeMissing") is not None
    prot.tiltRangeMissing.set(True)
    prot.tiltMin.set(50.0)
    prot.tiltMax.set(-50.0)
    assert any("smaller" in e for e in prot._fallbackTiltRangeErrors())
    prot.tiltMin.set(-50.0)
    prot.tiltMax.set(60.0)
    assert prot._fallbackTiltRangeErrors() == [] and prot._fallbackTiltRange() == (-50.0, 60.0)


@pytest.mark.parametrize("gpus, processes, expect_torchrun", [("0 1", True, True), ("0", True, False),
                                                               ("0 1", False, False)])
def test_several_gpus_run_one_process_each_under_torchrun(monkeypatch, gpus, processes, expect_torchrun):
    """With several GPU ids, a step whose core command shares its work runs under torchrun, one process per GPU;
    Scipion fills CUDA_VISIBLE_DEVICES with the list."""
    from pyworkflow.protocol import Form

    from cryomine_scipion import Plugin
    from cryomine_scipion.protocols import ProtCryomineClassify

    Plugin._defineVariables()  # what Scipion does when it loads the plugin
    prot = ProtCryomineClassify()
    prot._defineParams(Form(prot))
    prot.useGpu.set(True)
    prot.gpuList.set(gpus)
    calls = []
    monkeypatch.setattr(prot, "runJob", lambda program, params, **kw: calls.append((program, params)))
    monkeypatch.setattr(prot, "info", lambda *a, **k: None)
    prot.runCore("classify predict", ["--in", "x.star"], gpu=True, processes=processes)
    program, params = calls[0]
    assert program.startswith("CUDA_VISIBLE_DEVICES=%(GPU)s ") and params.endswith("--device cuda")
    assert ("-m torch.distributed.run --standalone --nproc-per-node 2 -m cryomine_core" in program) == expect_torchrun
    assert program.endswith("-m cryomine_core")


@pytest.mark.parametrize("protocol, step", [("ProtCryomineAlign", "alignStep"),
                                            ("ProtCryomineMultiRefClassify", "classifyStep"),
                                            ("ProtCryomineTrainClassifier", "trainStep")])
def test_alignment_and_training_steps_share_their_work_between_listed_gpus(monkeypatch, protocol, step):
    """Refinement and multi-reference classification stream their particles and add up the processes' sums;
    training averages the processes' gradients: with two GPU ids their step runs under torchrun."""
    from pyworkflow.protocol import Form

    import cryomine_scipion.protocols as protocols
    from cryomine_scipion import Plugin

    Plugin._defineVariables()
    prot = getattr(protocols, protocol)()
    prot._defineParams(Form(prot))
    prot.useGpu.set(True)
    prot.gpuList.set("0 1")
    calls = []
    monkeypatch.setattr(prot, "runCore", lambda command, args, **kw: calls.append((command, kw)))
    monkeypatch.setattr(prot, "_commonArgs", lambda: [], raising=False)
    monkeypatch.setattr(prot, "resumeArgs", lambda *a: [])
    if protocol == "ProtCryomineMultiRefClassify":
        prot.numberOfClasses.set(2)
    getattr(prot, step)()
    assert calls and calls[0][1] == {"gpu": True, "processes": True}, calls


def test_train_classifier_offers_every_registered_architecture():
    from cryomine_core.models import model_names
    from cryomine_scipion.protocols.protocol_train_classifier import ARCHITECTURES

    assert sorted(ARCHITECTURES) == sorted(model_names())
    assert ARCHITECTURES[:5] == ["dsrf3d-v2", "dsrf3d", "rb3d", "cb3d", "compact3d"]  # saved projects keep their index


def test_train_from_sets_takes_class_names_one_per_set():
    """'one set per class' may name its classes in the form; a count that does not match the sets, or a repeated
    name, is refused before anything runs."""
    from pyworkflow.protocol import Form

    from cryomine_scipion.protocols import ProtCryomineTrainClassifier
    from cryomine_scipion.protocols.protocol_train_classifier import FROM_SETS

    prot = ProtCryomineTrainClassifier()
    prot._defineParams(Form(prot))
    prot.inputKind.set(FROM_SETS)
    prot.classNames.set("ribosome chaperonin")
    assert any("gives 2 name(s) for 0 sets" in e for e in prot._validate())
    assert prot._givenClassNames() == ["ribosome", "chaperonin"]
    prot.classNames.set("")
    assert not any("Class names" in e for e in prot._validate())
