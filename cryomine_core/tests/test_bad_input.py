"""Bad input to the command line: exit 2, one line that names the item and the fix, nothing written.

Each case is refused before any work (the output folder stays absent).
"""

import pytest

from cryomine_core.cli import main

CASES = {
    "extract --voxel-size 0": (["extract", "--coords", "{tmp}/c.star", "--out", "{tmp}/out", "--box", "24",
                                "--voxel-size", "0"], "--voxel-size 0"),
    "extract --voxel-size -3": (["extract", "--coords", "{tmp}/c.star", "--out", "{tmp}/out", "--box", "24",
                                 "--voxel-size", "-3"], "--voxel-size -3"),
    "subdivide --pca-components 0": (["subdivide", "--in", "{tmp}/t.star", "--out", "{tmp}/out", "--features", "rif",
                                      "--pca-components", "0"], "--pca-components 0"),
    "segment train --depth 9": (["segment", "train", "--tomograms", "{tmp}/t.mrc", "--labels", "{tmp}/l.mrc",
                                 "--out", "{tmp}/out", "--depth", "9"], "--depth 9"),
    "segment train --depth 0": (["segment", "train", "--tomograms", "{tmp}/t.mrc", "--labels", "{tmp}/l.mrc",
                                 "--out", "{tmp}/out", "--depth", "0"], "--depth 0"),
    "segment train --patch > --box-size": (["segment", "train", "--tomograms", "{tmp}/t.mrc", "--labels",
                                            "{tmp}/l.mrc", "--out", "{tmp}/out", "--box-size", "32", "--patch",
                                            "48"], "--patch 48 is larger than --box-size 32"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_in_one_line_before_any_work(case, tmp_path, capsys):
    argv, expected = CASES[case]
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("cryomine: error:") and expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["random bytes", "empty", "text"])
def test_a_file_that_is_not_a_model_is_one_line_without_torch_advice(kind, tmp_path, capsys):
    import numpy as np

    from cryomine_core.classify.model_file import read_classifier_file
    from cryomine_core.errors import InputFileError
    from cryomine_core.segment.model_file import load_segmenter
    from cryomine_core.train import load_checkpoint

    junk = tmp_path / "model.pt"
    junk.write_bytes({"random bytes": np.random.default_rng(0).bytes(4096), "empty": b"",
                      "text": b"data_particles\nloop_\n_rlnImageName #1\na.mrc\n"}[kind])
    for reader in (read_classifier_file, load_segmenter, load_checkpoint):
        with pytest.raises(InputFileError) as info:
            reader(junk)
        msg = str(info.value)
        assert len(msg.splitlines()) == 1 and str(junk) in msg and "weights_only" not in msg
    rc = main(["classify", "predict", "--in", str(tmp_path / "t.star"), "--model", str(junk), "--out",
               str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "weights_only" not in err


def test_non_star_input_and_unlabelled_tables_say_what_they_are(tmp_path):
    import numpy as np
    import pandas as pd

    from cryomine_core.classify.labels import check_labels, table_labels
    from cryomine_core.errors import CryomineError
    from cryomine_core.io import table as T

    junk = tmp_path / "t.star"
    junk.write_bytes(np.random.default_rng(1).bytes(2000).replace(b"data_", b"xxxx_"))
    with pytest.raises(CryomineError, match="not a STAR file"):
        T.read_table(junk)
    labels, names, _ = table_labels(pd.DataFrame({T.CLASS: [0, 0, 0]}))
    with pytest.raises(CryomineError, match="no subtomogram is labelled"):
        check_labels(labels, names)


@pytest.mark.parametrize("defect", ["truncated", "voxel size 0"])
def test_extract_checks_every_tomogram_before_writing(defect, tmp_path, capsys):
    """A bad second tomogram must not overwrite the first tomogram's subtomograms of an earlier run."""
    import numpy as np
    import pandas as pd

    from cryomine_core.io import table as T
    from cryomine_core.io.mrc import write_mrc

    rng = np.random.default_rng(0)
    write_mrc(tmp_path / "a.mrc", rng.normal(size=(32, 48, 48)).astype(np.float32), 10.0)
    write_mrc(tmp_path / "b.mrc", rng.normal(size=(32, 48, 48)).astype(np.float32), 10.0)
    if defect == "voxel size 0":
        import mrcfile

        with mrcfile.open(tmp_path / "b.mrc", mode="r+") as mrc:
            mrc.voxel_size = 0.0
    else:
        data = (tmp_path / "b.mrc").read_bytes()
        (tmp_path / "b.mrc").write_bytes(data[: len(data) // 2])
    coords = {c: [24.0, 24.0] for c in T.COORDS[:2]} | {T.COORDS[2]: [16.0, 16.0]}
    need = (T.TOMO_FILE, *T.COORDS)
    T.write_table(tmp_path / "a.star", pd.DataFrame({T.TOMO_FILE: ["a.mrc", "a.mrc"], **coords}), require=need)
    T.write_table(tmp_path / "ab.star", pd.DataFrame({T.TOMO_FILE: ["a.mrc", "b.mrc"], **coords}), require=need)
    out = tmp_path / "out"
    assert main(["extract", "--coords", str(tmp_path / "a.star"), "--out", str(out), "--box", "12"]) == 0
    before = {p.name: p.read_bytes() for p in sorted((out / "subtomograms").iterdir())}
    capsys.readouterr()
    rc = main(["extract", "--coords", str(tmp_path / "ab.star"), "--out", str(out), "--box", "16"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "b.mrc" in err
    assert {p.name: p.read_bytes() for p in sorted((out / "subtomograms").iterdir())} == before


def _subtomograms(tmp_path, sizes, boxes=None):
    import numpy as np
    import pandas as pd

    from cryomine_core.io import table as T
    from cryomine_core.io.mrc import write_mrc

    boxes = boxes or [8] * len(sizes)
    for i, (vs, b) in enumerate(zip(sizes, boxes)):
        write_mrc(tmp_path / f"s{i}.mrc", np.random.default_rng(i).normal(size=(b, b, b)).astype(np.float32), vs)
    return pd.DataFrame({T.IMAGE: [str(tmp_path / f"s{i}.mrc") for i in range(len(sizes))]})


def test_voxel_size_is_not_trusted_blindly(tmp_path):
    from cryomine_core.errors import InputFileError
    from cryomine_core.io import table as T
    from cryomine_core.validate import check_subtomograms

    df = _subtomograms(tmp_path, [14.0, 14.0, 14.0])
    assert check_subtomograms(df)["voxel_size"] == pytest.approx(14.0)
    with pytest.raises(InputFileError, match=r"s0.mrc: the table gives 10.0000 Å per voxel \(cmVoxelSize, row 1\) but "
                                             r"the MRC header 14.0000"):
        check_subtomograms(df.assign(**{T.VOXEL_SIZE: 10.0}))
    # the odd item is named, also when it is the first one
    (tmp_path / "b").mkdir()
    odd_first = _subtomograms(tmp_path / "b", [14.0, 10.0, 10.0, 10.0])
    with pytest.raises(InputFileError, match=r"s0.mrc: voxel size 14.0000 Å differs from 10.0000"):
        check_subtomograms(odd_first)
    (tmp_path / "c").mkdir()
    odd_box = _subtomograms(tmp_path / "c", [10.0, 10.0, 10.0], boxes=[6, 8, 8])
    with pytest.raises(InputFileError, match=r"s0.mrc: box \(6, 6, 6\) differs from \(8, 8, 8\)"):
        check_subtomograms(odd_box)


def test_table_check_refuses_a_set_without_voxel_size(tmp_path, capsys):
    import mrcfile

    from cryomine_core.io import table as T

    df = _subtomograms(tmp_path, [14.0, 14.0])
    for path in df[T.IMAGE]:
        with mrcfile.open(path, mode="r+") as mrc:
            mrc.voxel_size = 0.0
    T.write_table(tmp_path / "t.star", df)
    assert main(["table", "check", str(tmp_path / "t.star")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no voxel size" in err and "s0.mrc" in err


@pytest.mark.parametrize("command", [["align", "refine", "--in", "{tmp}/t.star"],
                                     ["classify", "predict", "--in", "{tmp}/t.star", "--model", "{tmp}/m.pt"],
                                     ["subdivide", "--in", "{tmp}/t.star", "--features", "rif"],
                                     ["extract", "--coords", "{tmp}/c.star", "--box", "16"]])
@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_output_folder_that_cannot_be_made_is_refused_first(command, where, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    out = tmp_path / "taken" if where == "a file" else tmp_path / "taken" / "sub"
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in command] + ["--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_output_file_location_is_checked_too(tmp_path, capsys):
    (tmp_path / "dir.star").mkdir()
    rc = main(["formats", "convert", str(tmp_path / "in.star"), "--from", "relion", "--to", "dynamo", "--out",
               str(tmp_path / "dir.star")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is a folder" in err


def test_a_full_disk_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import collections

    import cryomine_core.io.outputs as outputs

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    rc = main(["subdivide", "--in", str(tmp_path / "t.star"), "--features", "rif", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "only 1 MB free" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("defect,expected", [("nan", "NaN or infinite"), ("constant", "the volume is constant"),
                                             ("swapped tilt", "has tilt range (60.0, -60.0)")])
def test_table_check_reads_every_voxel_and_the_tilt_ranges(defect, expected, tmp_path, capsys):
    import numpy as np

    from cryomine_core.io import table as T
    from cryomine_core.io.mrc import write_mrc

    df = _subtomograms(tmp_path, [14.0, 14.0, 14.0]).assign(**{T.TILT_MIN: -60.0, T.TILT_MAX: 60.0})
    T.write_table(tmp_path / "ok.star", df)
    assert main(["table", "check", str(tmp_path / "ok.star")]) == 0
    capsys.readouterr()
    if defect == "swapped tilt":
        df.loc[1, [T.TILT_MIN, T.TILT_MAX]] = [60.0, -60.0]
    else:
        vol = np.zeros((8, 8, 8), np.float32)
        if defect == "nan":
            vol = np.random.default_rng(5).normal(size=(8, 8, 8)).astype(np.float32)
            vol[2, 3, 4] = np.nan
        write_mrc(tmp_path / "s1.mrc", vol, 14.0)
    import starfile  # CryoMine's own writer refuses a swapped tilt range; write the broken table directly

    starfile.write({T.BLOCK: df}, tmp_path / "bad.star", overwrite=True)
    assert main(["table", "check", str(tmp_path / "bad.star")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and ("s1.mrc" in err or "row 2" in err)
