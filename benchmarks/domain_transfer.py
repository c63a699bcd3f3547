"""Domain transfer: classifiers trained on isolated subtomograms, tested on subtomograms cut from tomograms.

    python benchmarks/classification.py --domain-transfer --small   # 2-core CPU, < 15 min
    python benchmarks/classification.py --domain-transfer           # full mode, for a GPU

The classification benchmarks (``classification.py``, ``learning_curve.py``) train and test on
*isolated* simulated subtomograms (:class:`~cryomine_core.simulate.SubtomogramSimulator`: one
particle alone in its box, noise at the requested SNR measured in that box). A user's
subtomograms are *extracted from a tomogram*: neighbours reach into the box, the noise level is
set for the whole tomogram and the box is a window cut out of a larger reconstruction. This
benchmark measures what that shift costs and whether training on extracted subtomograms closes it.

**Data** (every set from its own seeds; the same complexes, voxel size, tilt range, SNR and
acquisition for all, so the only shift is isolated vs extracted):

- complexes: the held-out maps of ``learning_curve.py`` (1s3x, 2uv8, 3h84, 3ipm, 3j9i, 3qm1, 4v4r,
  4v7r, ...; the first ``--n-classes``, 8 by default), box 24 at 20 Å, at most 1 voxel of shift;
  without ``../shared/data/structures``: procedural phantoms (``real_structures: false``);
- acquisition ``TRAIN_ACQ`` of ``learning_curve.py`` (5 um underfocus, 2-degree step, direct Fourier
  inversion), tilt +-60 (``--tilt``), SNR 0.1 (``--snr``);
- (a) isolated train, ``n`` per class (``learning_curve.simulate``); (c) isolated validation, 20
  per class; (d) isolated test, 40 per class;
- (b) extracted train: tomograms (:func:`~cryomine_core.simulate.tomograms.simulate_tomogram`,
  (48, 192, 192) voxels zyx, occupancy 0.15 of bounding spheres, the SNR over the whole
  tomogram) are simulated one after the other (seeds ``100000 * (kind + 1) + 1000 * seed + k``,
  kind 0 train, 1 validation, 2 test) and every particle is extracted at its true centre
  (:func:`~cryomine_core.extract.extract_subtomograms`, ``edge="skip"``: a particle whose box
  crosses the tomogram edge is dropped and counted), taking the first ``n`` of each class, until
  every class has ``n``; (c) extracted validation, 20 per class, from other tomograms; (e) extracted
  test, 40 per class, from other tomograms again. The placement draws classes uniformly and
  rejects overlaps, so small complexes are placed more often than large ones; the cap per class
  balances the sets, and the large complexes set how many tomograms are needed. Reported: the
  tomograms used, particles placed, dropped at the edge (about half in (48, 192, 192): the box
  is half the tomogram's thickness), taken per class; the neighbours (fraction of boxes holding
  voxels of another particle's label map, how many other particles on average, the fraction of
  labelled voxels in the box that belong to them: every box, 5-6 and about 50 % with 8 complexes)
  and the realised SNR in the boxes (signal variance of the noise-free boxes over the noise
  variance, averaged over the boxes: about 0.1, as the isolated sets by construction). The
  placement stops at about 0.12 occupancy (2000 rejected candidates in a row).

**Contrast.** Both domains come out of the same forward model without CTF correction, so protein
is *dark* in both: the class averages of isolated and of extracted subtomograms correlate
negatively with the (spherically averaged) clean map, measured each run and reported
(``contrast``; measured at SNR 0.1 on the 8 complexes with 16 test subtomograms per class: -0.37
isolated, -0.32 extracted, every class negative in both; per particle, the correlation with the
noise-free density under the same pose is about -0.17 isolated and -0.20 extracted). Hence
``invert=False`` for extraction (inverting would flip only the extracted domain); every
subtomogram of both domains is then z-scored (zero mean, unit standard deviation) so that a
difference of overall scale between a simulated box and a tomogram window plays no part (RIF-SVM
features depend on scale; the CNNs normalise each volume themselves, as ``--normalise`` says).

**Methods.** RIF-SVM (12 shells, trained on train + validation, as in ``learning_curve.py``) and
compact3d (width 0.5; full mode 1.0, plus DSRF3D-v2) with the ``subtomo`` recipe and its input
normalisation (:func:`~cryomine_core.train.recipes.recipe_normalisation`), validation on the
validation set of its own training domain, test-time augmentation of the recipe; epochs
``min(20, 8000 / n_train)``, at least 8 (full mode ``min(40, 60000 / n_train)``, at least 10).
Each method is trained on (a) and on (b) and tested on (d) and (e).

**Figures**, per method: the accuracy of every (trained on, tested on) pair, per class too; the
*drop* ``acc(isolated -> isolated) - acc(isolated -> extracted)`` (what the shift costs a model
trained on isolated subtomograms); the *gain* ``acc(extracted -> extracted) - acc(isolated ->
extracted)``; the *gap* ``acc(isolated -> isolated) - acc(extracted -> extracted)``, with the
target ``gap <= 0.05`` (accuracy on extracted subtomograms within 0.05 of accuracy on isolated
ones). A table, then exactly one JSON line holding the settings and every figure.

``--small`` (2 CPU cores, < 15 min): n = 100 per class, the data simulated in two processes
(isolated sets | tomograms, about 1 min, some 20 tomograms) and the two training domains trained
in two processes, one torch thread each (10 epochs of 800 subtomograms; about 11 min when the two
cores are shared with another job, less on idle cores). Full mode: n = 500, 30 validation and 100
test per class, (64, 256, 256) tomograms, on ``--device`` (CUDA when present). ``--n-per-class``,
``--n-val``, ``--n-test``, ``--epochs``, ``--tomo-shape``, ``--occupancy``, ``--edge``, ``--models``,
``--workers`` override the settings (quick checks, e.g. ``--small --n-classes 3 --n-per-class 20
--epochs 2``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_curve import (  # noqa: E402
    REPO,
    TRAIN_ACQ,
    add_classifier_arguments,
    epochs_for,
    run_jobs,
    simulate,
    structure_specs,
)

DOMAINS = ("isolated", "extracted")
KINDS = ("train", "val", "test")


def zscore(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation per subtomogram."""
    x = x.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.maximum(std, 1e-12)


def acquisition(tilt: float):
    from cryomine_core.simulate.acquisition import AcquisitionParams

    return AcquisitionParams(tilt_min_deg=-tilt, tilt_max_deg=tilt, tilt_step_deg=TRAIN_ACQ["tilt_step"],
                             defocus_um=TRAIN_ACQ["defoci"][0], reconstruction=TRAIN_ACQ["reconstruction"])


def spherical_average(volume: np.ndarray) -> np.ndarray:
    """The volume averaged over rotations about its centre voxel ``n // 2`` (shells of 1 voxel)."""
    n = volume.shape[-1]
    zz, yy, xx = np.indices(volume.shape) - n // 2
    shell = np.rint(np.sqrt(xx**2 + yy**2 + zz**2)).astype(int)
    profile = np.bincount(shell.ravel(), volume.ravel()) / np.maximum(np.bincount(shell.ravel()), 1)
    return profile[shell]


def contrast(x: np.ndarray, y: np.ndarray, references: list[np.ndarray]) -> list[float]:
    """Per class: Pearson correlation of the class average with the spherically averaged clean map
    (negative: protein dark, as in raw tomograms)."""
    out = []
    for c, ref in enumerate(references):
        sel = y == c
        if not sel.any():
            out.append(float("nan"))
            continue
        a, b = x[sel].mean(0).ravel(), spherical_average(ref).ravel()
        out.append(float(np.corrcoef(a, b)[0, 1]))
    return out


def simulate_isolated(job: dict) -> dict:
    """The isolated sets (a), (c), (d)."""
    torch.set_num_threads(job["threads"])
    o, t0 = job["opts"], time.perf_counter()
    out = {}
    for j, kind in enumerate(KINDS):
        x, y = simulate(job["specs"], o[f"n_{kind}"], o["tilt"], o["snr"], o["box"], o["voxel"], o["max_shift"],
                        job["seed"] + j, TRAIN_ACQ)
        out[kind] = (zscore(x), y)
        print(f"isolated {kind}: {len(y)} subtomograms ({time.perf_counter() - t0:.0f} s)", flush=True)
    out["seconds"] = time.perf_counter() - t0
    return out


def simulate_extracted(job: dict) -> dict:
    """The extracted sets (b), (c), (e): tomograms until every class has its count."""
    torch.set_num_threads(job["threads"])
    from cryomine_core.extract import extract_subtomograms
    from cryomine_core.simulate.acquisition import TiltModel
    from cryomine_core.simulate.structures import load_structure
    from cryomine_core.simulate.tomograms import simulate_tomogram

    o, t0 = job["opts"], time.perf_counter()
    box, shape = o["box"], tuple(o["tomo_shape"])
    structures = [load_structure(s, o["voxel"], box) for s in job["specs"]]
    n_classes = len(structures)
    params = acquisition(o["tilt"])
    model = TiltModel(params, shape, o["voxel"], job["device"])
    out = {}
    for kind_index, kind in enumerate(KINDS):
        target = o[f"n_{kind}"]
        counts = np.zeros(n_classes, dtype=int)
        xs, ys, info = [], [], {"tomograms": 0, "placed": 0, "dropped_at_edge": 0, "padded": 0, "seeds": [],
                                "placed_per_class": [0] * n_classes}
        signal_var, noise_var, foreign, with_neighbour, neighbours = [], [], [], [], []
        occupancy, snr_tomo = [], []
        k = 0
        while counts.min() < target:
            if k >= o["max_tomograms"]:
                print(f"WARNING: extracted {kind}: {k} tomograms reached, counts per class {counts.tolist()} "
                      f"(target {target})", flush=True)
                break
            seed = 100000 * (kind_index + 1) + 1000 * job["seed"] + k
            sim = simulate_tomogram(structures, shape, occupancy=o["occupancy"], snr=o["snr"], params=params,
                                    seed=seed, device=job["device"], model=model)
            k += 1
            classes, centres = np.asarray(sim["classes"]), np.asarray(sim["coordinates"])
            tomo = sim["tomogram"].numpy()
            ex = extract_subtomograms(tomo, centres, box, edge=o["edge"], invert=False, normalise=True)
            info["tomograms"] += 1
            info["seeds"].append(seed)
            info["placed"] += int(classes.size)
            info["dropped_at_edge"] += int(ex.skipped.size)
            info["padded"] += int(ex.padded.size)
            for c in range(n_classes):
                info["placed_per_class"][c] += int((classes == c).sum())
            occupancy.append(sim["occupancy"])
            snr_tomo.append(sim["snr_realised"])
            take = []
            for row, i in enumerate(ex.kept):
                c = int(classes[i])
                if counts[c] < target:
                    counts[c] += 1
                    take.append(row)
            if not take:
                continue
            take = np.asarray(take)
            kept = ex.kept[take]
            xs.append(ex.volumes[take])
            ys.append(classes[kept])
            # neighbours (instance map) and realised SNR in the boxes (noise-free reconstruction)
            raw = extract_subtomograms(tomo, centres[kept], box, edge=o["edge"], normalise=False).volumes
            clean = extract_subtomograms(sim["clean"].numpy(), centres[kept], box, edge=o["edge"],
                                         normalise=False).volumes
            margin = box // 2 + 1  # zero-padded instance map: boxes crossing the edge (edge="pad") see background
            inst = np.pad(sim["instances"].numpy().astype(np.float32), margin)
            inst = extract_subtomograms(inst, centres[kept] + margin, box, edge="skip", normalise=False).volumes
            inst = np.rint(inst).astype(np.int64)
            signal_var.extend(clean.var(axis=(1, 2, 3)).tolist())
            noise_var.extend((raw - clean).var(axis=(1, 2, 3)).tolist())
            for vol, i in zip(inst, kept):
                mine = int((vol == i + 1).sum())
                other = (vol > 0) & (vol != i + 1)
                foreign.append(int(other.sum()) / max(mine + int(other.sum()), 1))
                with_neighbour.append(bool(other.any()))
                neighbours.append(int(np.unique(vol[other]).size))
            del sim, tomo
        x = np.concatenate(xs) if xs else np.zeros((0, box, box, box), np.float32)
        y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        info.update({
            "per_class": np.bincount(y, minlength=n_classes).tolist(), "n": int(y.size),
            "mean_occupancy": float(np.mean(occupancy)), "mean_tomogram_snr_realised": float(np.mean(snr_tomo)),
            "box_snr_realised": float(np.mean(signal_var) / max(np.mean(noise_var), 1e-30)),
            "fraction_with_neighbour": float(np.mean(with_neighbour)), "mean_neighbours": float(np.mean(neighbours)),
            "mean_foreign_label_fraction": float(np.mean(foreign)),
            "seconds_since_start": time.perf_counter() - t0})
        out[kind] = (x, y)
        out[f"{kind}_info"] = info
        print(f"extracted {kind}: {info['n']} subtomograms from {info['tomograms']} tomograms ({info['placed']} "
              f"placed, {info['dropped_at_edge']} dropped at the edge), per class {info['per_class']}, "
              f"{100 * info['fraction_with_neighbour']:.0f} % with a neighbour in the box "
              f"({info['mean_neighbours']:.1f} on average, {100 * info['mean_foreign_label_fraction']:.0f} % of "
              f"labelled voxels), box SNR "
              f"{info['box_snr_realised']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    out["seconds"] = time.perf_counter() - t0
    return out


def _simulate(job: dict) -> dict:
    return simulate_isolated(job) if job["what"] == "isolated" else simulate_extracted(job)


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> list[float]:
    return [float((pred[y == c] == c).mean()) if (y == c).any() else float("nan") for c in range(n_classes)]


def train_domain(job: dict) -> dict:
    """RIF-SVM and every CNN trained on one domain, tested on both."""
    torch.set_num_threads(job["threads"])
    from cryomine_core.classify import RifSvmClassifier
    from cryomine_core.models import build_model
    from cryomine_core.train import ArrayDataset, fit, predict_logits
    from cryomine_core.train.recipes import recipe_config, recipe_normalisation

    o, seed, domain, n_classes = job["opts"], job["seed"], job["domain"], job["n_classes"]
    norm = o["normalise"] or recipe_normalisation(o["recipe"])
    (x_tr, y_tr), (x_va, y_va) = job["train"], job["val"]
    tests = job["tests"]
    t0 = time.perf_counter()
    row = {}
    svm = RifSvmClassifier(n_shells=o["shells"], seed=seed).fit(np.concatenate([x_tr, x_va]),
                                                                np.concatenate([y_tr, y_va]))
    row["rif-svm"] = {"seconds": 0.0}
    for test_domain, (x_te, y_te) in tests.items():
        pred = svm.predict(x_te)
        row["rif-svm"][test_domain] = float((pred == y_te).mean())
        row["rif-svm"][f"{test_domain}_per_class"] = per_class_accuracy(pred, y_te, n_classes)
    row["rif-svm"]["seconds"] = time.perf_counter() - t0
    print(f"trained on {domain}: rif-svm " + "  ".join(f"-> {d} {row['rif-svm'][d]:.3f}" for d in tests)
          + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    val_set = ArrayDataset(x_va, y_va, normalise=norm)
    train_set = ArrayDataset(x_tr, y_tr, normalise=norm)
    epochs = o["epochs"] or epochs_for(len(y_tr), o)
    for name in o["models"]:
        t1 = time.perf_counter()
        torch.manual_seed(seed)
        net = build_model(name, n_classes, o["box"], width=o["width"])
        cfg = recipe_config(o["recipe"], tilt_range=(-o["tilt"], o["tilt"]), epochs=epochs, seed=seed,
                            log_interval_s=1e9)
        res = fit(net, train_set, val_set, cfg, device=job["device"])
        tta = tuple(cfg.augment.tilt_range) if cfg.tta else None
        vals = [h["val_accuracy"] for h in res.history]
        r = {"best_val_accuracy": float(max(vals)), "final_val_accuracy": float(vals[-1]),
             "kept_epoch": res.best_epoch, "epochs": res.epochs_run, "train_seconds": res.seconds}
        for test_domain, (x_te, y_te) in tests.items():
            logits, yt = predict_logits(net, ArrayDataset(x_te, y_te, normalise=norm), device=job["device"],
                                        tta_range=tta)
            pred = logits.argmax(1).numpy()
            r[test_domain] = float((pred == yt).mean())
            r[f"{test_domain}_per_class"] = per_class_accuracy(pred, yt, n_classes)
        r["seconds"] = time.perf_counter() - t1
        row[name] = r
        print(f"trained on {domain}: {name} " + "  ".join(f"-> {d} {r[d]:.3f}" for d in tests)
              + f" (val best {r['best_val_accuracy']:.3f}, {epochs} epochs, {r['seconds']:.0f} s)", flush=True)
    return {"domain": domain, "n_train": int(len(y_tr)), "n_val": int(len(y_va)), "epochs": epochs,
            "normalise": norm, "methods": row, "seconds": time.perf_counter() - t0}


def _table(results: dict, methods: list[str]) -> str:
    lines = ["| method | trained on | -> isolated | -> extracted |", "|---|---|---|---|"]
    for m in methods:
        for d in DOMAINS:
            r = results[m][d]
            lines.append(f"| {m} | {d} | {r['isolated']:.3f} | {r['extracted']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain-transfer", action="store_true", help="(the switch of classification.py; accepted)")
    ap.add_argument("--small", action="store_true", help="settings for a 2-core CPU (< 15 min)")
    add_classifier_arguments(ap)
    ap.add_argument("--snr", type=float, default=0.1, help="SNR of isolated subtomograms and of tomograms (0.1)")
    ap.add_argument("--tilt", type=float, default=60.0, help="tilt range +- degrees (60)")
    ap.add_argument("--seed", type=int, default=0, help="base seed, 0 <= seed < 100 (tomogram seeds stay disjoint)")
    ap.add_argument("--device", default="auto", help="CNN training and tomogram simulation (auto: CUDA if present)")
    ap.add_argument("--n-per-class", type=int, default=None, help="training subtomograms per class (small 100)")
    ap.add_argument("--n-val", type=int, default=None, help="validation per class (small 20, full 30)")
    ap.add_argument("--n-test", type=int, default=None, help="test per class (small 40, full 100)")
    ap.add_argument("--epochs", type=int, default=None, help="CNN epochs (default: min(20, 8000 / n_train) >= 8)")
    ap.add_argument("--tomo-shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                    help="tomogram shape zyx (small 48 192 192, full 64 256 256)")
    ap.add_argument("--occupancy", type=float, default=0.15, help="tomogram occupancy (bounding spheres, 0.15)")
    ap.add_argument("--edge", choices=["skip", "pad"], default="skip", help="boxes crossing the tomogram edge")
    ap.add_argument("--max-tomograms", type=int, default=None, help="per set (small 60, full 400)")
    ap.add_argument("--workers", type=int, default=None, help="processes (small: 2, one thread each)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    small = args.small
    if not 0 <= args.seed < 100:
        ap.error("--seed must be in [0, 100)")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and not small else "cpu"
    models = args.models or (["compact3d"] if small else ["compact3d", "dsrf3d-v2"])
    opts = {
        "box": 24, "voxel": 20.0, "max_shift": 1.0, "tilt": float(args.tilt), "snr": float(args.snr),
        "n_train": args.n_per_class or (100 if small else 500), "n_val": args.n_val or (20 if small else 30),
        "n_test": args.n_test or (40 if small else 100),
        "tomo_shape": list(args.tomo_shape or ((48, 192, 192) if small else (64, 256, 256))),
        "occupancy": args.occupancy, "edge": args.edge, "max_tomograms": args.max_tomograms or (60 if small else 400),
        "models": models, "width": 0.5 if small else 1.0, "recipe": args.recipe,
        "normalise": args.normalise, "shells": 12, "epochs": args.epochs,
        "max_epochs": 20 if small else 40, "min_epochs": 8 if small else 10, "passes": 8000 if small else 60000,
    }
    folder = Path(args.structures_dir) if args.structures_dir else REPO.parent / "shared" / "data" / "structures"
    specs, real = structure_specs(folder, args.n_classes, opts["box"], opts["voxel"], opts["max_shift"])
    if not real:
        print("NOTE: procedural phantoms instead of the held-out complexes (real_structures: false)", flush=True)
    workers = args.workers or (2 if small and device == "cpu" else 1)
    threads = 1 if workers > 1 else max(1, torch.get_num_threads())
    settings = {**opts, "mode": "small" if small else "full", "structures": [Path(s).stem for s in specs],
                "real_structures": real, "acquisition": TRAIN_ACQ, "device": device, "workers": workers,
                "threads_per_worker": threads, "seed": args.seed, "invert": False, "zscore_per_subtomogram": True}
    print(f"domain transfer: {len(specs)} complexes {settings['structures']}, box {opts['box']} at "
          f"{opts['voxel']:g} Å, "
          f"+-{opts['tilt']:g}, SNR {opts['snr']:g}; {opts['n_train']}/{opts['n_val']}/{opts['n_test']} per class "
          f"train/val/test; tomograms {tuple(opts['tomo_shape'])} zyx, occupancy {opts['occupancy']:g}, edge "
          f"{opts['edge']}; {', '.join(models)} ({opts['recipe']} recipe) and RIF-SVM; {workers} worker(s) x "
          f"{threads} thread(s) on {device}", flush=True)
    t0 = time.perf_counter()
    base = {"specs": specs, "opts": opts, "seed": args.seed, "threads": threads, "device": device}
    iso, ext = run_jobs(_simulate, [{**base, "what": "isolated"}, {**base, "what": "extracted"}], workers)
    data = {"isolated": iso, "extracted": ext}
    simulate_s = time.perf_counter() - t0

    from cryomine_core.simulate.structures import load_structure

    refs = [load_structure(s, opts["voxel"], opts["box"]).volume.numpy() for s in specs]
    contrast_cc = {d: contrast(*data[d]["test"], refs) for d in DOMAINS}
    mean_cc = {d: float(np.nanmean(v)) for d, v in contrast_cc.items()}
    same_sign = bool(np.sign(mean_cc["isolated"]) == np.sign(mean_cc["extracted"]))
    print(f"contrast (class average vs spherically averaged clean map): isolated {mean_cc['isolated']:.3f}, "
          f"extracted {mean_cc['extracted']:.3f}" + ("" if same_sign else "  WARNING: opposite signs"), flush=True)

    n_classes = len(specs)
    tests = {d: data[d]["test"] for d in DOMAINS}
    jobs = [{**base, "domain": d, "n_classes": n_classes, "train": data[d]["train"], "val": data[d]["val"],
             "tests": tests} for d in DOMAINS]
    done = run_jobs(train_domain, jobs, workers)
    methods = ["rif-svm", *models]
    results = {m: {r["domain"]: r["methods"][m] for r in done} for m in methods}
    summary = {}
    for m in methods:
        r = results[m]
        gap = r["isolated"]["isolated"] - r["extracted"]["extracted"]
        summary[m] = {"drop_isolated_trained": r["isolated"]["isolated"] - r["isolated"]["extracted"],
                      "gain_extracted_training": r["extracted"]["extracted"] - r["isolated"]["extracted"],
                      "gap_extracted_trained_vs_isolated": gap, "target_gap_le_0.05": bool(gap <= 0.05)}
    print()
    print(_table(results, methods))
    for m in methods:
        s = summary[m]
        print(f"{m}: drop isolated->extracted (isolated-trained) {s['drop_isolated_trained']:+.3f}; gain from "
              f"training on extracted {s['gain_extracted_training']:+.3f}; gap acc(iso->iso) - acc(ext->ext) "
              f"{s['gap_extracted_trained_vs_isolated']:+.3f} (target <= 0.05: "
              f"{'met' if s['target_gap_le_0.05'] else 'not met'})", flush=True)
    counts = {d: {k: np.bincount(data[d][k][1], minlength=n_classes).tolist() for k in KINDS} for d in DOMAINS}
    extracted_info = {k: ext[f"{k}_info"] for k in KINDS}
    print(json.dumps({
        "settings": settings, "counts_per_class": counts, "extracted_sets": extracted_info,
        "contrast": {"per_class": contrast_cc, "mean": mean_cc, "same_sign": same_sign},
        "training": [{k: v for k, v in r.items() if k != "methods"} for r in done], "results": results,
        "summary": summary, "simulate_seconds": {"isolated": iso["seconds"], "extracted": ext["seconds"],
                                                 "wall": simulate_s},
        "seconds": time.perf_counter() - t0}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
