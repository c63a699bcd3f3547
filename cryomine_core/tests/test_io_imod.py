"""The IMOD model reader refuses non-IMOD, truncated and corrupt input at once (issue 18: it used to hang).

Every read runs under a wall-clock alarm, so a regression to an endless loop fails the test
instead of hanging the suite.
"""

import signal
import struct
from contextlib import contextmanager

import numpy as np
import pytest

from cryomine_core.cli import main
from cryomine_core.errors import InputFileError
from cryomine_core.io.imod import parse_imod_points, read_imod_points, write_imod_points

DEADLINE_S = 2.0

STAR_TEXT = """# Created by CryoMine

data_particles

loop_
_rlnImageName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
sub_000001.mrc 10.0 20.0 30.0
sub_000002.mrc 11.0 21.0 31.0
"""

DYNAMO_TEXT = "\n".join(" ".join(str(v) for v in [i, 1, 1, 0.5, -0.2, 0.1, 10.0, 20.0, 30.0] + [0] * 26)
                        for i in range(1, 6)) + "\n"


class ReaderHung(AssertionError):
    """The reader ran past its deadline (not an OSError, so no reader can mistake it for a bad file)."""


@contextmanager
def deadline(seconds: float = DEADLINE_S):
    """Fail the test with :class:`ReaderHung` if the body runs longer than ``seconds`` (SIGALRM, main thread)."""

    def _expired(signum, frame):
        raise ReaderHung(f"the IMOD reader ran longer than {seconds} s (endless loop?)")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _refused(path, match: str) -> None:
    with deadline(), pytest.raises(InputFileError, match=match) as info:
        read_imod_points(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


@pytest.fixture
def model_bytes(tmp_path) -> bytes:
    path = write_imod_points(tmp_path / "valid.mod", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]))
    return path.read_bytes()


def test_star_file_is_not_an_imod_model(tmp_path):
    path = tmp_path / "particles.star"
    path.write_text(STAR_TEXT)
    _refused(path, "not an IMOD model")


def test_dynamo_table_is_not_an_imod_model(tmp_path):
    path = tmp_path / "particles.tbl"
    path.write_text(DYNAMO_TEXT)
    _refused(path, "not an IMOD model")


def test_random_bytes_are_not_an_imod_model(tmp_path):
    path = tmp_path / "noise.mod"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _refused(path, "not an IMOD model")


def test_empty_file_is_not_an_imod_model(tmp_path):
    path = tmp_path / "empty.mod"
    path.write_bytes(b"")
    _refused(path, "not an IMOD model")


def test_magic_then_text_or_noise_is_refused(tmp_path):
    """The magic alone is not enough: the chunk walk stops at the first impossible read."""
    rng = np.random.default_rng(1)
    cases = {"text.mod": b"IMODV1.2" + STAR_TEXT.encode() * 20,
             "noise.mod": b"IMODV1.2" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             "header_only.mod": b"IMODV1.2" + bytes(232)}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        _refused(path, "IMOD model")


def test_truncated_valid_model_is_refused_at_every_cut(tmp_path, model_bytes):
    assert model_bytes.endswith(b"IEOF")
    for cut in range(4, len(model_bytes)):
        with deadline(), pytest.raises(InputFileError, match="truncated|corrupt|not an IMOD"):
            parse_imod_points(model_bytes[:cut], f"cut{cut}.mod")
    path = tmp_path / "no_end.mod"
    path.write_bytes(model_bytes[:-4])
    _refused(path, "without the IEOF end marker")


def test_negative_point_count_is_refused(model_bytes):
    at = model_bytes.index(b"CONT") + 4
    bad = model_bytes[:at] + struct.pack(">i", -5) + model_bytes[at + 4:]
    with deadline(), pytest.raises(InputFileError, match="negative contour point count"):
        parse_imod_points(bad, "neg.mod")


def test_valid_model_still_reads(tmp_path, model_bytes):
    path = tmp_path / "ok.mod"
    path.write_bytes(model_bytes)
    with deadline():
        df = read_imod_points(path)
    assert np.allclose(df[["x", "y", "z"]].to_numpy(), [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert df["contour_id"].tolist() == [0, 1, 2] and (df["object_id"] == 0).all()


@pytest.fixture(scope="module")
def cli_imported():
    """Import what ``formats convert`` imports on first use, so that the deadline times the reading only."""
    import cryomine_core.io.formats  # noqa: F401
    import cryomine_core.io.relion  # noqa: F401
    from cryomine_core.cli import build_parser

    build_parser()


@pytest.mark.parametrize("text", [STAR_TEXT, DYNAMO_TEXT], ids=["star", "dynamo"])
def test_cli_convert_from_imod_refuses_other_formats(tmp_path, capsys, text, cli_imported):
    path = tmp_path / "wrong_format.txt"
    path.write_text(text)
    with deadline():
        code = main(["formats", "convert", str(path), "--from", "imod", "--to", "cryomine", "--voxel-size", "10",
                     "--out", str(tmp_path / "out.star")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an IMOD model" in err[0] and str(path) in err[0]
    assert not (tmp_path / "out.star").exists()
