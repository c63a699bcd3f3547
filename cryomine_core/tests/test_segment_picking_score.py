"""The CZII picking score (F-beta, beta = 4) on hand-made cases."""

import numpy as np
import pytest

from cryomine_core.segment.picking_score import close_counts, fbeta, picking_score

TRUTH = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])


def test_perfect_picks_score_one():
    s = picking_score({"ribosome": [TRUTH]}, {"ribosome": [TRUTH + 1.0]}, {"ribosome": 60.0})
    assert s["score"] == 1.0 and s["per_class"]["ribosome"]["tp"] == 4


def test_all_misses_score_zero():
    s = picking_score({"ribosome": [TRUTH]}, {"ribosome": [TRUTH + 40.0]}, {"ribosome": 60.0})
    assert s["score"] == 0.0
    assert (s["per_class"]["ribosome"]["tp"], s["per_class"]["ribosome"]["fp"]) == (0, 4)


def test_radius_fraction_rule():
    """Found within half the radius (30 of 60), not beyond."""
    assert close_counts(TRUTH[:1], [[29.9, 0, 0]], 30.0) == (1, 0, 0)
    assert close_counts(TRUTH[:1], [[30.1, 0, 0]], 30.0) == (0, 1, 1)


def test_a_known_mix():
    """3 of 4 found, one found twice, one false pick: TP 3, FP 2, FN 1."""
    picks = np.array([TRUTH[0], TRUTH[0] + 5, TRUTH[1], TRUTH[2] + [10, 0, 0], [500.0, 500, 500]])
    r = picking_score({"a": [TRUTH]}, {"a": [picks]}, {"a": 40.0})["per_class"]["a"]
    assert (r["tp"], r["fp"], r["fn"]) == (3, 2, 1)
    p, rec = 3 / 5, 3 / 4
    assert r["precision"] == pytest.approx(p) and r["recall"] == pytest.approx(rec)
    assert r["fbeta"] == pytest.approx(17 * p * rec / (16 * p + rec))


def test_recall_weighs_more_than_precision():
    many_false = fbeta(tp=10, fp=30, fn=0)["fbeta"]  # P 0.25, R 1
    many_missed = fbeta(tp=10, fp=0, fn=30)["fbeta"]  # P 1, R 0.25
    assert many_false > 0.8 > 0.3 > many_missed


def test_classes_are_weighted_and_tomograms_pooled():
    truth = {"big": [TRUTH, TRUTH], "small": [TRUTH[:2], TRUTH[:2]]}
    picks = {"big": [TRUTH, TRUTH], "small": [np.zeros((0, 3)), np.zeros((0, 3))]}
    s = picking_score(truth, picks, {"big": 60.0, "small": 20.0}, weights={"big": 1, "small": 2})
    assert s["per_class"]["big"]["tp"] == 8 and s["per_class"]["small"]["fn"] == 4
    assert s["score"] == pytest.approx(1 / 3)
    zero_weight = picking_score(truth, picks, {"big": 60.0, "small": 20.0}, weights={"small": 0})
    assert zero_weight["score"] == 1.0 and "small" in zero_weight["per_class"]


def test_picks_of_a_class_absent_from_the_truth_are_false():
    s = picking_score({"a": [TRUTH]}, {"a": [TRUTH], "ghost": [TRUTH]}, {"a": 10.0, "ghost": 10.0})
    assert s["per_class"]["ghost"]["fp"] == 4 and s["score"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="radius"):
        picking_score({"a": [TRUTH]}, {"a": [TRUTH]}, {})
