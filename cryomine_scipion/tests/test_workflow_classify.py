"""Headless Scipion workflow: simulate -> train CNN classifier -> classify a new simulated set.

Ground truth: the classifier is trained on the true classes of one simulated set (a particle
class and the background-only 'empty' class, so a few CPU epochs suffice) and applied to another
(different seed); the predicted class names must match the true ones for most items.
"""

import json

import pytest

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

COMMON = dict(structures="phantom:0", emptyClass=True, boxSize=24, voxelSize=12.0, maxShift=1.0, snr=1.0,
              tiltMin=-60.0, tiltMax=60.0, tiltStep=3.0)


class TestCryomineClassifyWorkflow(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_train_then_classify(self):
        from cryomine_scipion.protocols import ProtCryomineClassify, ProtCryomineSimulate, ProtCryomineTrainClassifier
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS
        from cryomine_scipion.protocols.protocol_train_classifier import ARCHITECTURES, FROM_CLASSES

        train_set = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, nPerClass=30, seed=1, **COMMON)
        self.launchProtocol(train_set)
        test_set = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, nPerClass=10, seed=2, **COMMON)
        self.launchProtocol(test_set)

        train = self.newProtocol(ProtCryomineTrainClassifier, inputKind=FROM_CLASSES,
                                 architecture=ARCHITECTURES.index("compact3d"), epochs=8, patience=8, batchSize=8,
                                 learningRate=0.005, seed=0)
        train.inputClasses.set(train_set)
        train.inputClasses.setExtended("classes")
        self.launchProtocol(train)
        model = train.model
        self.assertEqual(model.getClassNames(), ["phantom0", "empty"])
        self.assertEqual(model.getBoxSize(), 24)
        self.assertAlmostEqual(model.getSamplingRate(), 12.0, places=3)
        with open(train._getExtraPath("metrics.json")) as fh:
            self.assertIn("history", json.load(fh))

        classify = self.newProtocol(ProtCryomineClassify)
        classify.inputSubtomos.set(test_set)
        classify.inputSubtomos.setExtended("subtomograms")
        classify.inputModel.set(train)
        classify.inputModel.setExtended("model")
        self.launchProtocol(classify)

        names = {cls.getObjId(): cls.getObjLabel() for cls in test_set.classes.iterItems()}
        truth = {s.getObjId(): names[s.getClassId()] for s in test_set.subtomograms.iterItems()}
        correct = total = 0
        for cls in classify.classes.iterItems():
            for item in cls.iterItems():
                total += 1
                correct += truth[item.getObjId()] == cls.getObjLabel()
                self.assertTrue(0.0 <= item._cmScore.get() <= 1.0)
        self.assertEqual(total, 20)
        self.assertGreaterEqual(correct / total, 0.8, f"accuracy {correct}/{total} (particle versus empty box)")
