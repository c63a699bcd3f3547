"""Import/export protocols: places in the Tomography tree and the messages for unmatched tomograms."""

import pandas as pd
import pytest

pytestmark = pytest.mark.scipion


def _tree_paths(node, prefix=()):
    here = prefix + ((node.text or node.value or ""),)
    if getattr(node, "value", None):
        yield node.value, here
    for child in getattr(node, "childs", []):
        yield from _tree_paths(child, here)


def test_import_export_protocols_sit_in_tomo_sections():
    import pyworkflow as pw
    from pwem import Domain
    from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig

    paths = dict(_tree_paths(ProtocolTreeConfig.load(Domain, pw.Config.SCIPION_PROTOCOLS)["Tomography"]))
    assert paths["ProtCryomineImportRelionStar"][-2] == "Imports"
    assert paths["ProtCryomineImportDynamoTable"][-2] == "Imports"
    assert paths["ProtCryomineImportRelion5"][-2] == "Imports"
    assert paths["ProtCryomineImportCopick"][-2] == "Imports"
    assert paths["ProtCryomineImportImodCoordinates"][-3:-1] == ("Particles", "Picking")
    assert paths["ProtCryomineExportParticles"][-2] == "Exports"


class _Tomo:
    def __init__(self, tsId):
        self.tsId = tsId

    def getTsId(self):
        return self.tsId

    def getFileName(self):
        return f"/data/{self.tsId}.mrc"

    def clone(self):
        return self


class _Tomos:
    def __init__(self, *names):
        self.items = [_Tomo(n) for n in names]

    def iterItems(self, orderBy=None):
        return iter(self.items)

    def getSamplingRate(self):
        return 10.0


def test_unmatched_tomogram_names_are_named_with_the_fix():
    from cryomine_scipion.convert_formats import TomogramIndex, unmatchedTomograms

    index = TomogramIndex(_Tomos("t1", "t2"))
    assert index.find("/elsewhere/t2.rec").getTsId() == "t2"
    assert index.byNumber(1).getTsId() == "t1" and index.byNumber(3) is None
    df = pd.DataFrame({"rlnTomoName": ["t1", "tomo_9", "t2"]})
    with pytest.raises(ValueError, match=r"tomogram name\(s\) \['tomo_9'\] match no tomogram.*\['t1', 't2'\]"):
        unmatchedTomograms(df, index, "in.star")
    with pytest.raises(ValueError, match="no rlnTomoName column"):
        unmatchedTomograms(pd.DataFrame({"rlnCoordinateX": [1.0]}), index, "in.star")
    unmatchedTomograms(pd.DataFrame({"rlnTomoName": ["t1.mrc"]}), index, "in.star")


def test_imod_models_must_match_tomograms():
    from cryomine_scipion.convert_formats import TomogramIndex
    from cryomine_scipion.protocols import ProtCryomineImportImodCoordinates

    index = TomogramIndex(_Tomos("t1", "t2"))
    prot = ProtCryomineImportImodCoordinates()
    assert {k: v.getTsId() for k, v in prot._match(["/m/t1.mod", "/m/t2.mod"], index).items()} == \
        {"/m/t1.mod": "t1", "/m/t2.mod": "t2"}
    with pytest.raises(ValueError, match=r"IMOD model\(s\) \['t3.mod'\] match no tomogram"):
        prot._match(["/m/t1.mod", "/m/t3.mod"], index)
