"""Headless Scipion workflow: template-free subdivision of a mixed set, checked against the truth.

The set to subdivide holds three simulated structures. With rotation-invariant features and the
number of clusters chosen by BIC, each structure must come out as a cluster of its own. With a
CNN trained on two of the structures only (the third is unseen), the full pipeline (feature
clusters, reference-free averages, re-assignment of every subtomogram by multi-reference
alignment) must recover the unseen structure as a cluster of its own (purity and recall >= 0.9)
and agree with the truth overall (ARI > 0.8).
"""

import pytest

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

COMMON = dict(boxSize=24, voxelSize=12.0, maxShift=1.0, snr=2.0, tiltMin=-60.0, tiltMax=60.0, tiltStep=3.0)


class TestCryomineSubdivideWorkflow(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_structures_become_clusters(self):
        from sklearn.metrics import adjusted_rand_score

        from cryomine_scipion.protocols import ProtCryomineSimulate, ProtCryomineSubdivide, ProtCryomineTrainClassifier
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS
        from cryomine_scipion.protocols.protocol_subdivide import FROM_MODEL, ROTATION_INVARIANT
        from cryomine_scipion.protocols.protocol_train_classifier import ARCHITECTURES, FROM_CLASSES

        seen = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures="phantom:0 phantom:1",
                                nPerClass=30, seed=1, **COMMON)
        self.launchProtocol(seen)
        mixed = self.newProtocol(ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures="phantom:0 phantom:1 phantom:2",
                                 nPerClass=12, seed=2, **COMMON)
        self.launchProtocol(mixed)

        train = self.newProtocol(ProtCryomineTrainClassifier, inputKind=FROM_CLASSES,
                                 architecture=ARCHITECTURES.index("compact3d"), epochs=8, patience=8, batchSize=8)
        train.inputClasses.set(seen)
        train.inputClasses.setExtended("classes")
        self.launchProtocol(train)

        names = {c.getObjId(): c.getObjLabel() for c in mixed.classes.iterItems()}
        truth = {s.getObjId(): names[s.getClassId()] for s in mixed.subtomograms.iterItems()}
        ids = sorted(truth)

        def run(**kwargs):
            prot = self.newProtocol(ProtCryomineSubdivide, maxClusters=5, alignClusters=False, seed=0, **kwargs)
            prot.inputSubtomos.set(mixed)
            prot.inputSubtomos.setExtended("subtomograms")
            return prot

        rif = run(featureSource=ROTATION_INVARIANT, numberOfClusters=0)
        self.launchProtocol(rif)
        pred = {item.getObjId(): cls.getObjId() for cls in rif.classes.iterItems() for item in cls.iterItems()}
        self.assertEqual(set(pred), set(truth))
        self.assertEqual(rif.classes.getSize(), 3, "BIC should find the three planted structures")
        for name in ("phantom0", "phantom1", "phantom2"):
            labels = [pred[i] for i in ids if truth[i] == name]
            cluster = max(set(labels), key=labels.count)
            members = [i for i in ids if pred[i] == cluster]
            purity = sum(truth[i] == name for i in members) / len(members)
            recall = labels.count(cluster) / len(labels)
            self.assertGreaterEqual(min(purity, recall), 0.9, f"{name}: purity {purity:.2f}, recall {recall:.2f}")
        self.assertIn("ARI", " ".join(rif.summary()))

        # the full pipeline: CNN feature clusters, reference-free averages, re-assignment by alignment
        cnn = run(featureSource=FROM_MODEL, numberOfClusters=3)
        cnn.alignClusters.set(True)
        cnn.alignIterations.set(2)
        cnn.reassignIterations.set(3)
        cnn.inputModel.set(train)
        cnn.inputModel.setExtended("model")
        self.launchProtocol(cnn)
        pred = {item.getObjId(): cls.getObjId() for cls in cnn.classes.iterItems() for item in cls.iterItems()}
        ari = adjusted_rand_score([truth[i] for i in ids], [pred[i] for i in ids])
        self.assertGreater(ari, 0.8, f"CNN features + re-assignment: ARI {ari:.2f}")
        labels = [pred[i] for i in ids if truth[i] == "phantom2"]  # never seen by the network
        cluster = max(set(labels), key=labels.count)
        members = [i for i in ids if pred[i] == cluster]
        purity = sum(truth[i] == "phantom2" for i in members) / len(members)
        recall = labels.count(cluster) / len(labels)
        self.assertGreaterEqual(min(purity, recall), 0.9, f"unseen phantom2: purity {purity:.2f}, recall {recall:.2f}")
