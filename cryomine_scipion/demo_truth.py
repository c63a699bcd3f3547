"""The demo's measurements against its ground truth (the planted particles, their classes and
orientations, and the true maps).

Kept apart from :mod:`cryomine_scipion.demo`, which runs the Scipion protocols: here are the pure
measurements (the segmentation's objects, the held-out complex's cluster, rotation errors, the
average against its true map and against the *oracle* average) and the "visual proteomics" picture.

The oracle average uses the same particles and half sets as the found average, with the planted
orientations and zero shifts (the particles are extracted at their planted centres), so the ratio
``found FSC-0.5 resolution / oracle FSC-0.5 resolution`` (both against the true map) says how much
the reference-free alignment costs, independently of the particle count, noise, CTF and wedge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["segmentation_scores", "heldout_cluster", "alignment_errors", "oracle_table", "average_against_truth",
           "cluster_maps", "maps_figure", "proteomics_figure"]


def segmentation_scores(objects_dir: Path, probability_maps: dict, simulated: dict, out_table: Path) -> dict:
    """The segmentation's objects against the planted particles, with the core's evaluation
    (:func:`cryomine_core.segment.object_evaluation.evaluate_objects`: a found centre matches a true
    particle when it falls inside it, a hollow complex's cavity included; each particle once).

    Args:
        objects_dir: the ``segment objects`` folder (``metrics.json``, ``objects.star``).
        probability_maps: tomogram name -> its probability stack (the maps ``segment objects`` read).
        simulated: tomogram name -> the ``cryomine simulate tomograms`` folder that made it
            (``particles.star``, ``instances/tomo000.mrc``).
        out_table: where to write the merged truth table (the simulator names every tomogram ``tomo000``).
    Returns ``{"segmentation_object_f1", "segmentation_precision", "segmentation_recall"}`` (localisation,
    class-agnostic) and ``"segmentation_class_f1"`` (the object must also carry the right class).
    """
    import shutil

    import pandas as pd

    from cryomine_core.io import columns as C
    from cryomine_core.io import table as T
    from cryomine_core.segment.object_evaluation import evaluate_objects

    work = Path(out_table).parent / "segmentation_evaluation"  # evaluate_objects adds to metrics.json: a copy
    work.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "objects.star"):
        if (Path(objects_dir) / name).exists():
            shutil.copyfile(Path(objects_dir) / name, work / name)
    names = sorted(probability_maps)
    tables = []
    for name in names:
        df = T.read_table(Path(simulated[name]) / "particles.star", require=(C.TOMO, C.INSTANCE), resolve_paths=False)
        df[C.TOMO] = name
        tables.append(df)
    T.write_table(out_table, pd.concat(tables, ignore_index=True), require=(C.TOMO, C.INSTANCE))
    metrics = evaluate_objects(work, [probability_maps[n] for n in names], truth_table=out_table,
                               truth_instances=[Path(simulated[n]) / "instances" / "tomo000.mrc" for n in names])
    objects = metrics.get("objects")
    if objects is None:
        return {"segmentation_object_f1": 0.0, "segmentation_precision": 0.0, "segmentation_recall": 0.0,
                "segmentation_class_f1": 0.0}
    loc, overall = objects["localisation"], objects["overall"]
    return {"segmentation_object_f1": _rounded(loc["f1"]), "segmentation_precision": _rounded(loc["precision"]),
            "segmentation_recall": _rounded(loc["recall"]), "segmentation_class_f1": _rounded(overall["f1"])}


def _rounded(value):
    return None if value is None else round(float(value), 3)


def heldout_cluster(clusters: dict, true_class: dict, held_out: str) -> dict:
    """The subdivision cluster holding most of the held-out complex: its purity (held-out members /
    cluster size) and recall (held-out members in it / all held-out subtomograms)."""
    members: dict = {}
    for item, cluster in clusters.items():
        members.setdefault(cluster, []).append(true_class[item] == held_out)
    n_held = sum(sum(m) for m in members.values())
    if not n_held:
        return {"cluster": None, "purity": None, "recall": None}
    best = max(members, key=lambda c: sum(members[c]))
    return {"cluster": best, "purity": round(sum(members[best]) / len(members[best]), 3),
            "recall": round(sum(members[best]) / n_held, 3)}


def alignment_errors(aligned, true_angles: dict, keep=None) -> np.ndarray:
    """Per-particle rotation error (deg) of an aligned SetOfSubTomograms against the planted RELION
    Euler angles ``true_angles {item id: (rot, tilt, psi)}``, up to one global rotation (a
    reference-free average may come out rotated; the core's ``pose_errors`` removes that first).
    ``keep``: item ids to measure (those of one true structure); all when None."""
    import torch

    from cryomine_core.align.evaluate import pose_errors
    from cryomine_core.geometry import relion_angstrom_to_pose, scipion_matrix_to_pose

    items = [(i.getObjId(), i.getTransform().getMatrix()) for i in aligned.iterItems()
             if keep is None or i.getObjId() in keep]
    if not items:
        return np.array([np.nan])
    eulers = torch.tensor([true_angles[i] for i, _ in items], dtype=torch.float64)
    r_true, _ = relion_angstrom_to_pose(eulers, torch.zeros_like(eulers), 1.0)
    r_est, _ = scipion_matrix_to_pose(torch.tensor(np.stack([m for _, m in items]), dtype=torch.float64))
    zeros = torch.zeros(len(items), 3, dtype=torch.float64)
    return pose_errors(r_est, zeros, r_true, zeros)[0].numpy()


def oracle_table(aligned_table: Path, true_angles: dict, out: Path) -> Path:
    """Write ``out``: the particle table of an alignment (``cmItemId`` per row) with the planted
    orientations ``{item id: (rot, tilt, psi)}`` (RELION Eulers, degrees) and zero origins, keeping the
    alignment's half sets when it wrote them."""
    from cryomine_core.io import columns as C
    from cryomine_core.io import table as T

    df = T.read_table(aligned_table)
    ids = df[C.ITEM_ID].astype(int).tolist()
    eulers = np.array([true_angles[i] for i in ids], dtype=float).reshape(len(ids), 3)
    for k, col in enumerate(C.ANGLES):
        df[col] = eulers[:, k]
    for col in C.ORIGINS:
        df[col] = 0.0
    if C.ALIGN_FAILED in df.columns:
        df[C.ALIGN_FAILED] = 0
    T.write_table(out, df)
    return out


def average_against_truth(found: np.ndarray, oracle: np.ndarray, true_map: np.ndarray, voxel_size: float) -> dict:
    """Both averages ``(N, N, N)`` against the true map (:func:`cryomine_core.subdivide.evaluate.map_agreement`:
    the map is aligned to each average, either contrast tried): FSC-0.5 resolutions (Å), their ratio
    found / oracle, the correlations at 30 Å, whether the map had to be negated, and under ``maps`` the four
    volumes to show (each average beside the true map aligned to it)."""
    import torch

    from cryomine_core.subdivide.evaluate import map_agreement

    truth = torch.as_tensor(np.asarray(true_map, dtype=np.float32))
    res = {}
    for name, avg in (("found", found), ("oracle", oracle)):
        res[name] = map_agreement(torch.as_tensor(np.asarray(avg, dtype=np.float32)), truth, voxel_size)
    return {"fsc05_vs_true_map_A": round(res["found"]["fsc_05_A"], 1),
            "oracle_fsc05_vs_true_map_A": round(res["oracle"]["fsc_05_A"], 1),
            "fsc_ratio_to_oracle": round(res["found"]["fsc_05_A"] / res["oracle"]["fsc_05_A"], 3),
            "correlation_with_true_map": round(res["found"]["correlation"], 3),
            "oracle_correlation_with_true_map": round(res["oracle"]["correlation"], 3),
            "true_map_negated": bool(res["found"]["inverted"]),
            "maps": {"found": np.asarray(found), "true map (aligned to it)": res["found"]["aligned_map"].cpu().numpy(),
                     "oracle": np.asarray(oracle),
                     "true map (aligned to the oracle)": res["oracle"]["aligned_map"].cpu().numpy()}}


def proteomics_figure(tomogram: np.ndarray, positions: np.ndarray, panels: list[tuple[str, list]], path: Path,
                      slab: int = 6) -> Path:
    """The "visual proteomics" picture: a central slab of ``tomogram (Z, Y, X)`` with the particles
    within ``slab`` voxels of it drawn as circles coloured by class, one panel per labelling.

    Args:
        positions: ``(P, 3)`` x, y, z in voxels of the particles.
        panels: ``(title, labels)``: one label (class name) per particle, e.g. the truth, the
            classifier's classes, the subdivision's clusters.
        path: PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomine_core.align.report import save_figure

    zc = tomogram.shape[0] // 2
    near = np.abs(positions[:, 2] - zc) <= slab
    image = tomogram[max(zc - slab, 0):zc + slab + 1].mean(0)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (title, labels) in zip(axes[0], panels):
        ax.imshow(image, cmap="gray")
        names = sorted({str(lab) for lab in labels})
        for k, name in enumerate(names):
            sel = near & np.array([str(lab) == name for lab in labels])
            ax.scatter(positions[sel, 0], positions[sel, 1], s=110, facecolors="none", linewidths=1.6,
                       edgecolors=[cmap(k % 10)], label=f"{name} ({int(sel.sum())})")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Where each complex sits: z = {zc} +- {slab} voxels (slab average)")
    return save_figure(fig, path)


def cluster_maps(averages: dict, members: dict, true_maps: dict, voxel_size: float, negate: bool) -> tuple[list, dict]:
    """Each cluster's average against the true map of the structure most of its members are.

    Args:
        averages: cluster name -> its average ``(N, N, N)``.
        members: cluster name -> the true structure name of each member.
        true_maps: structure name -> true map ``(N, N, N)``.
        negate: the data show density dark (the sign :func:`average_against_truth` found).
    Returns ``(rows, maps)``: one row per cluster (size, dominant structure, purity, FSC-0.5 resolution and
    correlation against that structure's map) and the volumes to show (each average, then the true map
    aligned to it).
    """
    import torch

    from cryomine_core.subdivide.evaluate import map_agreement

    rows, maps = [], {}
    for name in sorted(averages):
        truth = list(members.get(name, []))
        if not truth:
            continue
        dominant = max(set(truth), key=truth.count)
        row = {"cluster": name, "size": len(truth), "dominant_structure": dominant,
               "purity": round(truth.count(dominant) / len(truth), 3)}
        if dominant in true_maps:
            agree = map_agreement(torch.as_tensor(np.asarray(averages[name], dtype=np.float32)),
                                  torch.as_tensor(np.asarray(true_maps[dominant], dtype=np.float32)), voxel_size,
                                  contrast="inverted" if negate else "same")
            row.update(fsc05_vs_true_map_A=round(agree["fsc_05_A"], 1), correlation=round(agree["correlation"], 3))
            maps[f"{name} ({dominant})"] = np.asarray(averages[name])
            maps[f"true {dominant}"] = agree["aligned_map"].cpu().numpy()
        rows.append(row)
    return rows, maps


def maps_figure(maps: dict, path: Path) -> Path:
    """Central z, y and x slices of each volume of ``maps {title: (N, N, N)}``, one column per volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomine_core.align.report import save_figure

    fig, axes = plt.subplots(3, len(maps), figsize=(2.4 * len(maps), 7.2), squeeze=False)
    for col, (title, vol) in enumerate(maps.items()):
        c = vol.shape[0] // 2
        for row, (img, axis) in enumerate(((vol[c], "z"), (vol[:, c], "y"), (vol[:, :, c], "x"))):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"{axis} centre")
        axes[0, col].set_title(title, fontsize=9)
    return save_figure(fig, path)
