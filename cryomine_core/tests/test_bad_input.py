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
