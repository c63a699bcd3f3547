"""Headless Scipion end-to-end workflow, checked against the simulator's ground truth at every step.

One project: simulate crowded tomograms (two phantom structures) -> import the tomogram files with
scipion-em-tomo's import protocol, as a user would -> train a segmenter on the simulated label
masks -> segment the imported tomograms (coordinates) -> extract subtomograms -> classify them
with a CNN trained on a simulated labelled set -> template-free subdivision (that CNN's features +
reference-free classification) -> reference-free
alignment of the largest cluster -> export to RELION STAR.

Ground truth: the simulator's extra/particles.star (tomogram, position, structure, orientation of
every planted particle) and extra/instances/*.mrc (one label per particle). Each extracted
subtomogram is matched to the nearest planted particle of its tomogram, whose structure and
orientation are then its truth.
"""

import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.scipion

from pyworkflow.tests import BaseTest, setupTestProject  # noqa: E402

from cryomine_core.geometry import relion_angstrom_to_pose, scipion_matrix_to_pose  # noqa: E402
from cryomine_core.io import table as T  # noqa: E402
from cryomine_core.io.mrc import read_mrc  # noqa: E402
from cryomine_scipion.tests.truth import coordinate_hits  # noqa: E402

STRUCTURES = "phantom:0 phantom:1"
VOXEL = 12.0
BOX = 24
TILTS = dict(tiltMin=-60.0, tiltMax=60.0, tiltStep=3.0)
MATCH_VOXELS = 4.0  # an extracted coordinate "is" a planted particle when within this distance


def _consensus_errors(r_true, r_est):
    """Rotation error (deg) of each particle once the one global rotation is removed (core's pose_errors)."""
    from cryomine_core.align.evaluate import pose_errors

    zeros = torch.zeros(r_true.shape[0], 3, dtype=r_true.dtype)
    return pose_errors(r_est, zeros, r_true, zeros)[0]


class TestCryomineEndToEnd(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def _launch(self, prot):
        t0 = time.time()
        self.launchProtocol(prot)
        print(f"{prot.getClassName()}: {time.time() - t0:.1f} s", flush=True)
        return prot

    def test_simulate_import_segment_extract_classify_subdivide_align_export(self):
        import tomo.protocols as tp
        from sklearn.metrics import adjusted_rand_score
        from tomo.constants import BOTTOM_LEFT_CORNER

        from cryomine_scipion.convert import tableTransforms
        from cryomine_scipion.protocols import (
            ProtCryomineAlign,
            ProtCryomineClassify,
            ProtCryomineExportParticles,
            ProtCryomineExtract,
            ProtCryomineSegment,
            ProtCryomineSimulate,
            ProtCryomineSubdivide,
            ProtCryomineTrainClassifier,
            ProtCryomineTrainSegmenter,
        )
        from cryomine_scipion.protocols.protocol_simulate import SUBTOMOGRAMS, TOMOGRAMS
        from cryomine_scipion.protocols.protocol_subdivide import FROM_MODEL
        from cryomine_scipion.protocols.protocol_train_classifier import ARCHITECTURES, FROM_CLASSES

        # --- 1. simulate crowded tomograms; import the tomogram files with tomo's protocol -----------
        sim = self._launch(self.newProtocol(
            ProtCryomineSimulate, kind=TOMOGRAMS, structures=STRUCTURES, tomoSize="64 64 32", nTomograms=2,
            occupancy=0.12, snr=5.0, voxelSize=VOXEL, seed=4, **TILTS))
        table = T.read_table(sim._getExtraPath("particles.star"), require=(T.TOMO, *T.COORDS), resolve_paths=False)
        table["tsId"] = [Path(str(t)).stem for t in table[T.TOMO]]
        planted = {ts: g.reset_index(drop=True) for ts, g in table.groupby("tsId")}
        self.assertEqual(sorted(planted), ["tomo000", "tomo001"])
        self.assertEqual(set(table[T.CLASS_NAME]), {"phantom0", "phantom1"})

        importTomos = self._launch(self.newProtocol(
            tp.ProtImportTomograms, filesPath=sim._getExtraPath("tomograms"), filesPattern="*.mrc",
            samplingRate=VOXEL, acquisitionAngleMin=TILTS["tiltMin"], acquisitionAngleMax=TILTS["tiltMax"]))
        tomos = importTomos.Tomograms
        self.assertEqual(sorted(t.getTsId() for t in tomos), sorted(planted))
        for tomo in tomos:  # the imported files are the simulated ones, voxel for voxel
            mine = read_mrc(tomo.getFileName())[0]
            theirs = read_mrc(sim._getExtraPath("tomograms", f"{tomo.getTsId()}.mrc"))[0]
            self.assertTrue(np.array_equal(mine, theirs))

        # --- 2. train a segmenter on the label masks, segment the imported tomograms -----------------
        train = self.newProtocol(ProtCryomineTrainSegmenter, nBoxes=4, boxSize=32, patch=24, epochs=20,
                                 patchesPerEpoch=16, width=4, seed=0)
        train.inputMasks.set(sim)
        train.inputMasks.setExtended("labelMasks")
        self._launch(train)
        seg = self.newProtocol(ProtCryomineSegment, minVoxels=4, boxSize=BOX)
        seg.inputTomograms.set(importTomos)
        seg.inputTomograms.setExtended("Tomograms")
        seg.inputModel.set(train)
        seg.inputModel.setExtended("model")
        self._launch(seg)
        instances = {ts: read_mrc(sim._getExtraPath("instances", f"{ts}.mrc"))[0] for ts in planted}
        hits, n_pred, n_true = coordinate_hits(seg.coordinates, instances)
        recall, precision = len(hits) / n_true, len(hits) / max(n_pred, 1)
        print(f"segmentation: recall {recall:.2f} ({len(hits)}/{n_true}), precision {precision:.2f} "
              f"({len(hits)}/{n_pred})")
        self.assertGreaterEqual(recall, 0.6, f"recall {recall:.2f} ({len(hits)}/{n_true})")
        self.assertGreaterEqual(precision, 0.6, f"precision {precision:.2f} ({len(hits)}/{n_pred})")

        # --- 3. extract subtomograms at the segmented coordinates ------------------------------------
        extract = self.newProtocol(ProtCryomineExtract, boxSize=BOX, edgeMode=1)  # pad: thin tomograms
        extract.inputCoordinates.set(seg)
        extract.inputCoordinates.setExtended("coordinates")
        self._launch(extract)
        subtomos = extract.subtomograms
        self.assertEqual(subtomos.getSize(), n_pred)
        trueClass, trueAngles, dists = {}, {}, []
        for sub in subtomos.iterSubtomos():
            coord = sub.getCoordinate3D()
            rows = planted[coord.getTomoId()]
            d = np.linalg.norm(rows[list(T.COORDS)].to_numpy(float) - np.asarray(coord.getPosition(BOTTOM_LEFT_CORNER)),
                               axis=1)
            nearest = int(np.argmin(d))
            dists.append(d[nearest])
            trueClass[sub.getObjId()] = rows[T.CLASS_NAME].iloc[nearest]
            trueAngles[sub.getObjId()] = rows[list(T.ANGLES)].iloc[nearest].to_numpy(float)
        dists = np.asarray(dists)
        near = float(np.mean(dists <= MATCH_VOXELS))
        print(f"extraction: {len(dists)} subtomograms, distance to nearest planted particle median "
              f"{np.median(dists):.2f} voxels, {near:.2f} within {MATCH_VOXELS}")
        self.assertGreaterEqual(near, 0.6, f"extracted coordinates near a planted particle: {dists.round(1)}")
        ids = sorted(trueClass)

        # --- 4. classify with a CNN trained on a simulated labelled set -------------------------------
        labelled = self._launch(self.newProtocol(
            ProtCryomineSimulate, kind=SUBTOMOGRAMS, structures=STRUCTURES, emptyClass=True, nPerClass=20,
            boxSize=BOX, voxelSize=VOXEL, maxShift=1.0, snr=1.0, seed=1, **TILTS))
        trainCls = self.newProtocol(ProtCryomineTrainClassifier, inputKind=FROM_CLASSES,
                                    architecture=ARCHITECTURES.index("compact3d"), epochs=6, patience=6, batchSize=8,
                                    learningRate=0.005, seed=0)
        trainCls.inputClasses.set(labelled)
        trainCls.inputClasses.setExtended("classes")
        self._launch(trainCls)
        classify = self.newProtocol(ProtCryomineClassify)
        classify.inputSubtomos.set(extract)
        classify.inputSubtomos.setExtended("subtomograms")
        classify.inputModel.set(trainCls)
        classify.inputModel.setExtended("model")
        self._launch(classify)
        predicted = {item.getObjId(): cls.getObjLabel() for cls in classify.classes.iterItems()
                     for item in cls.iterItems()}
        self.assertEqual(set(predicted), set(ids))
        particle = np.mean([predicted[i] != "empty" for i in ids])
        structure = np.mean([predicted[i] == trueClass[i] for i in ids])
        print(f"classification: {particle:.2f} called a particle, {structure:.2f} the true structure")
        self.assertGreaterEqual(particle, 0.8, "extracted objects are particles, not empty boxes")

        # --- 5. template-free subdivision -------------------------------------------------------------
        subdivide = self.newProtocol(ProtCryomineSubdivide, featureSource=FROM_MODEL, numberOfClusters=2,
                                     maxClusters=4, alignClusters=True, alignIterations=2, reassignIterations=3, seed=0)
        subdivide.inputSubtomos.set(extract)
        subdivide.inputSubtomos.setExtended("subtomograms")
        subdivide.inputModel.set(trainCls)
        subdivide.inputModel.setExtended("model")
        self._launch(subdivide)
        clusters = {item.getObjId(): cls.getObjId() for cls in subdivide.classes.iterItems()
                    for item in cls.iterItems()}
        self.assertEqual(set(clusters), set(ids), "every extracted subtomogram must be in one cluster")
        ari = adjusted_rand_score([trueClass[i] for i in ids], [clusters[i] for i in ids])
        print(f"subdivision: ARI {ari:.2f}")
        self.assertGreater(ari, 0.2, f"clusters versus true structures: ARI {ari:.2f}")

        # --- 6. align and average the largest cluster, reference-free ---------------------------------
        sizes = {cls.getObjId(): cls.getSize() for cls in subdivide.classes.iterItems()}  # iterItems reuses one object
        largestId = max(sizes, key=sizes.get)
        align = self.newProtocol(ProtCryomineAlign, iterations=3, angularStep=20.0, maxShift=3.0, seed=1)
        align.inputSubtomos.set(subdivide)
        align.inputSubtomos.setExtended(f"classes.{largestId}")
        self._launch(align)
        aligned = {s.getObjId(): np.asarray(s.getTransform().getMatrix()) for s in align.subtomograms.iterItems()}
        self.assertEqual(len(aligned), sizes[largestId])
        members = sorted(aligned)
        majority = max(set(trueClass[i] for i in members), key=[trueClass[i] for i in members].count)
        pure = [i for i in members if trueClass[i] == majority]
        r_true, _ = relion_angstrom_to_pose(torch.tensor(np.stack([trueAngles[i] for i in pure]), dtype=torch.float64),
                                            torch.zeros(len(pure), 3, dtype=torch.float64), VOXEL)
        r_est, _ = scipion_matrix_to_pose(torch.tensor(np.stack([aligned[i] for i in pure]), dtype=torch.float64))
        errors = _consensus_errors(r_true, r_est)
        median = float(errors.median())
        print(f"alignment: {len(members)} aligned ({len(pure)} {majority}), median rotation error {median:.1f} deg "
              f"({errors.round().tolist()})")
        # measured 2.3 deg (16 particles of the dominant structure, 3 iterations at 20 deg); a failed alignment
        # gives ~80 deg. Threshold 10 deg: the angular step, over 4x the measured error.
        self.assertLess(median, 10.0, f"median rotation error {median:.1f} deg")

        # --- 7. export to RELION STAR and read it back ------------------------------------------------
        export = self.newProtocol(ProtCryomineExportParticles, writeRelion=True, writeDynamo=False)
        export.inputParticles.set(align)
        export.inputParticles.setExtended("subtomograms")
        self._launch(export)
        from cryomine_core.io.relion import read_relion_star

        star = read_relion_star(export._getExtraPath("particles.star"))
        self.assertEqual(len(star), len(aligned))
        self.assertTrue(set(star[T.TOMO].astype(str)) <= set(planted), "each row names its tomogram")
        back = tableTransforms(star)
        for itemId, matrix in zip(star[T.ITEM_ID].astype(int), back):
            self.assertTrue(np.allclose(matrix, aligned[itemId], atol=1e-4), f"item {itemId}")
