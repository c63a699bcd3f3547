"""The plugin and every CryoMine protocol are discovered by Scipion and placed in the Tomography tree.

A plugin whose import fails is only logged by Scipion, so these tests import every module
explicitly (an ImportError fails the test) before asking pwem's Domain what it found.
"""

import importlib
import inspect
import pkgutil

import pytest

pytestmark = pytest.mark.scipion


def _cryomine_protocol_classes():
    import cryomine_scipion.protocols as pkg

    classes = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")  # ImportError fails the test
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if name.startswith("ProtCryomine") and obj.__module__ == module.__name__ and getattr(obj, "_label", None):
                classes[name] = obj
    return classes


def test_every_protocol_module_imports_and_has_label():
    classes = _cryomine_protocol_classes()
    assert "ProtCryomineExtract" in classes
    for name, cls in classes.items():
        assert cls._label, name


def test_plugin_and_protocols_are_discovered_by_pwem_domain():
    from pwem import Domain

    plugins = Domain.getPlugins()
    assert "cryomine_scipion" in plugins, f"plugin not discovered; plugins: {sorted(plugins)}"
    found = Domain.getProtocols()
    for name in _cryomine_protocol_classes():
        assert name in found, f"{name} not discovered by pwem.Domain"


def _tree_paths(node, prefix=()):
    here = prefix + ((node.text or node.value or ""),)
    if getattr(node, "value", None):
        yield node.value, here
    for child in getattr(node, "childs", []):
        yield from _tree_paths(child, here)


def test_protocols_appear_in_the_tomography_view_tree():
    import pyworkflow as pw
    from pwem import Domain
    from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig

    views = ProtocolTreeConfig.load(Domain, pw.Config.SCIPION_PROTOCOLS)
    assert "Tomography" in views, f"views: {list(views)}"
    paths = dict(_tree_paths(views["Tomography"]))
    for name in _cryomine_protocol_classes():
        assert name in paths, f"{name} is not in the Tomography tree (protocols.conf)"
    # extraction sits in tomo's own Particles > Extract group
    assert paths["ProtCryomineExtract"][-3:-1] == ("Particles", "Extract"), paths["ProtCryomineExtract"]
    # the simulator sits in tomo's Imports section (data enters the project there)
    assert paths["ProtCryomineSimulate"][-2] == "Imports", paths["ProtCryomineSimulate"]
    for name in ("ProtCryomineAlign", "ProtCryomineMultiRefClassify", "ProtCryomineTrainClassifier",
                 "ProtCryomineClassify", "ProtCryomineSubdivide"):
        assert paths[name][-3:-1] == ("Subtomogram averaging", "Classification and Alignment"), paths[name]


def test_model_object_and_viewer_are_discovered():
    from pwem import Domain

    assert "CryomineModel" in Domain.getObjects()
    viewers = Domain.getViewers()
    assert "CryomineResultsViewer" in viewers, sorted(viewers)[:20]


def test_bibtex_citations_resolve():
    from cryomine_scipion import _references
    from cryomine_scipion.bibtex import __doc__ as bib

    for key in _references:
        assert "{" + key + "," in bib, key
