"""Device selection, seeding and the command line's error handling."""

import json

import numpy as np
import pytest
import torch

from cryomine_core.cli import main
from cryomine_core.device import seed_everything, select_device
from cryomine_core.errors import DeviceError


def test_select_device_cpu_and_auto():
    assert select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_asking_for_cuda_without_gpu_is_an_error_not_a_fallback():
    with pytest.raises(DeviceError, match="no CUDA device is usable.*--device cpu"):
        select_device("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_seeding_reproduces_random_streams():
    a = seed_everything(7)
    x = (a.normal(size=3), torch.randn(3), np.random.rand(2))
    b = seed_everything(7)
    y = (b.normal(size=3), torch.randn(3), np.random.rand(2))
    np.testing.assert_array_equal(x[0], y[0])
    assert torch.equal(x[1], y[1])
    np.testing.assert_array_equal(x[2], y[2])


def test_cli_info_prints_json(capsys):
    assert main(["info", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["device"] == "cpu" and info["torch"] == torch.__version__


def test_cli_reports_input_errors_in_one_line_with_status_2(tmp_path, capsys):
    code = main(["table", "check", str(tmp_path / "nope.star")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cryomine: error:" in err and "nope.star" in err and "Traceback" not in err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import cryomine_core.cli.classify as classify_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(classify_cli, "run_models", interrupted)
    assert main(["classify", "models"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
