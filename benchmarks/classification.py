"""Benchmark of supervised subtomogram classification in the layout of Che et al. 2018, Table 1.

    python benchmarks/classification.py --small          # 2-core CPU, < 30 min (see below)
    python benchmarks/classification.py                  # full mode, for a GPU
    python benchmarks/classification.py --throughput     # inference subtomograms/s per model at 40^3
    python benchmarks/classification.py --learning-curve [--small]   # accuracy vs labelled per class
                                                         # (benchmarks/learning_curve.py)
    python benchmarks/classification.py --domain-transfer [--small]  # isolated vs extracted from tomograms
                                                         # (benchmarks/domain_transfer.py)

For every cell (tilt range +-60, +-50, +-40 degrees x SNR 0.1, 0.05, 0.03, 0.01) one data set is
simulated (:class:`~cryomine_core.simulate.SubtomogramSimulator`: random rotations and shifts,
CTF/MTF, noise at the SNR, direct Fourier inversion), split per class 80/20 train/test with 20 %
of train held for validation (:func:`~cryomine_core.classify.stratified_split`), and RIF-SVM
(spherical-harmonic power per shell, l <= 8, 14 shells, real + Fourier sources, RBF SVM) and each
CNN are trained on the same split and scored on the same test set. The CNNs use the shared
training loop (:func:`~cryomine_core.train.fit`) with the paper's recipe unless overridden.

Full mode: 40^3 at 9.2 Å, the maps of ``../shared/data/structures`` that fit the box with +-2
voxel shifts (11 of its 18 complexes; the 7 ribosome-sized ones are larger than 40^3 at 9.2 Å)
+ an empty class, 1000 per class, published network widths, 20 epochs (patience 5). Without that
folder: 22 procedural phantoms + empty.

``--small`` (what fits 2 CPU cores in < 30 min): 16^3 boxes at 24 Å/voxel, 4 phantoms + empty,
80 per class (256 train / 64 val / 80 test), the CNNs as *narrow variants* (width 0.25: a
quarter of the channels and FC units, FC dropout 0.3 instead of 0.5/0.7, the published values
being meant for 1024-4096-unit layers), 10 epochs, batch 32, lr 0.01; RIF-SVM with 8 shells;
one torch thread (on a shared 2-core machine intra-op threads of these small 3-D convolutions
cost 3-10x more than they gain). Accuracies are not comparable to the paper's numbers (tiny
training sets, small boxes), only the ranking within a run.

``--throughput``: builds each network at 40^3 with its published width and times inference
(batch 512 on CUDA with bfloat16 autocast and channels-last; batch 16 on the CPU) and one SGD
training step per batch (batch 64). Needs only torch.

Ends with one JSON line holding every figure.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryomine_core.errors import CryomineError  # noqa: E402
from cryomine_core.models import PAPER_MODELS, build_model, count_parameters  # noqa: E402

TILTS = (60, 50, 40)
SNRS = (0.1, 0.05, 0.03, 0.01)
# Che et al. 2018, Table 1 (test accuracy): RIF-SVM, DSRF3D, DSRF3D-v2, RB3D, CB3D
PAPER_TABLE = {
    (60, 0.1): (0.790, 0.911, 0.977, 0.950, 0.973), (60, 0.05): (0.620, 0.844, 0.925, 0.852, 0.933),
    (60, 0.03): (0.479, 0.706, 0.841, 0.711, 0.849), (60, 0.01): (0.218, 0.040, 0.407, 0.041, 0.445),
    (50, 0.1): (0.672, 0.896, 0.963, 0.925, 0.971), (50, 0.05): (0.493, 0.753, 0.910, 0.750, 0.899),
    (50, 0.03): (0.350, 0.581, 0.746, 0.548, 0.747), (40, 0.1): (0.670, 0.866, 0.954, 0.899, 0.970),
    (40, 0.05): (0.495, 0.735, 0.876, 0.671, 0.877), (40, 0.03): (0.360, 0.537, None, 0.502, 0.717),
}
PAPER_COLUMNS = ("rif-svm", "dsrf3d", "dsrf3d-v2", "rb3d", "cb3d")


def _default_structures_dir() -> Path:
    return REPO.parent / "shared" / "data" / "structures"


def _specs(args, box: int, voxel: float, max_shift: float) -> list[str]:
    from cryomine_core.simulate.structures import check_fits, load_structure

    folder = Path(args.structures_dir) if args.structures_dir else _default_structures_dir()
    if not args.small and folder.is_dir():
        specs = []
        for p in sorted(folder.glob("*.mrc")):
            try:
                check_fits(load_structure(str(p), voxel), box, max_shift)
                specs.append(str(p))
            except CryomineError as exc:  # a map that does not fit the box (or cannot be read) is reported and skipped
                print(f"skip {p.name}: {str(exc).split(';')[0]}")
        if specs:
            return specs[: args.n_classes] if args.n_classes else specs
    n = args.n_classes or (4 if args.small else 22)
    specs, seed = [], 0
    while len(specs) < n:  # phantoms that fit the box
        try:
            check_fits(load_structure(f"phantom:{seed}", voxel, box), box, max_shift)
            specs.append(f"phantom:{seed}")
        except CryomineError as exc:  # a phantom too large for the box is skipped, with the reason
            print(f"skip phantom:{seed}: {str(exc).split(';')[0]}")
        seed += 1
    return specs


def simulate_cell(specs, tilt: float, snr: float, n_per_class: int, box: int, voxel: float, max_shift: float,
                  seed: int, device) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Noisy subtomograms ``(N, box, box, box)`` and 0-based labels (the empty class last)."""
    from cryomine_core.simulate.acquisition import AcquisitionParams
    from cryomine_core.simulate.structures import load_structure
    from cryomine_core.simulate.subtomograms import EMPTY, SubtomogramSimulator

    structures = [load_structure(s, voxel, box) for s in specs]
    params = AcquisitionParams(tilt_min_deg=-float(tilt), tilt_max_deg=float(tilt))
    sim = SubtomogramSimulator(structures, box, params, device, max_shift=max_shift)
    rng = np.random.default_rng(seed)
    n_cls = len(structures)
    labels = rng.permutation(np.repeat(np.arange(n_cls + 1), n_per_class))
    classes = torch.as_tensor(np.where(labels == n_cls, EMPTY, labels), dtype=torch.long)
    sigma = sim.dataset_sigma(snr, torch.Generator().manual_seed(seed + 1))
    vols = [b.volumes for b in sim.batches(classes, torch.Generator().manual_seed(seed), snr, sigma, 128)]
    return torch.cat(vols).numpy(), labels, [s.name for s in structures] + ["empty"]


def run_cell(x, y, names, models, args, device) -> dict:
    from cryomine_core.classify import RifSvmClassifier, stratified_split
    from cryomine_core.train import ArrayDataset, TrainConfig, fit, predict_logits

    split = stratified_split(y, 0.2, 0.2, seed=args.seed)
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    out = {"n_train": int(tr.sum()), "n_val": int(va.sum()), "n_test": int(te.sum()), "acc": {}, "time": {}}

    if not args.skip_svm:
        svm = RifSvmClassifier(n_shells=args.shells, source="both")
        t0 = time.perf_counter()
        svm.fit(x[tr | va], y[tr | va])
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = svm.predict(x[te])
        t_inf = time.perf_counter() - t0
        out["acc"]["rif-svm"] = float((pred == y[te]).mean())
        out["time"]["rif-svm"] = {"train_s_per_subtomogram": t_fit / (tr | va).sum(),
                                  "inference_s_per_subtomogram": t_inf / te.sum()}

    train_set, val_set, test_set = ArrayDataset(x[tr], y[tr]), ArrayDataset(x[va], y[va]), ArrayDataset(x[te], y[te])
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                      seed=args.seed, log_interval_s=120.0, amp={"auto": "auto", "on": True, "off": False}[args.amp],
                      grad_clip=args.grad_clip)
    for name in models:
        torch.manual_seed(args.seed)
        kw = {"width": args.width}
        if args.dropout is not None:
            kw["dropout"] = args.dropout
        net = build_model(name, len(names), x.shape[-1], **kw)
        res = fit(net, train_set, val_set, cfg, device=device)
        t0 = time.perf_counter()
        logits, yt = predict_logits(net, test_set, device=device, batch_size=256)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_inf = time.perf_counter() - t0
        out["acc"][name] = float((logits.argmax(1).numpy() == yt).mean())
        out["time"][name] = {"train_s_per_subtomogram_epoch": res.seconds / (res.epochs_run * tr.sum()),
                             "inference_s_per_subtomogram": t_inf / te.sum(), "epochs_run": res.epochs_run,
                             "best_epoch": res.best_epoch}
        del net
    return out


def throughput(models, device, batch: int, steps: int) -> dict:
    """Inference subtomograms/s and SGD training s/subtomogram at 40^3, published widths."""
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_flush_denormal(True)
    res = {}
    for name in models:
        torch.manual_seed(0)
        net = build_model(name, 23, 40).to(device)
        if cuda:
            net = net.to(memory_format=torch.channels_last_3d)
        x = torch.randn(batch, 1, 40, 40, 40, device=device)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        net.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for _ in range(2 if cuda else 1):
                net(x)
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                net(x)
            if cuda:
                torch.cuda.synchronize()
            t_inf = (time.perf_counter() - t0) / (steps * batch)
        # training step (batch 64 on CUDA, smaller on the CPU)
        tb = 64 if cuda else min(batch, 8)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.005, momentum=0.9, nesterov=True)
        xt = x[:tb] if x.shape[0] >= tb else torch.randn(tb, 1, 40, 40, 40, device=device)
        yt = torch.randint(0, 23, (tb,), device=device)
        n_train = 5 if cuda else 1
        for i in range(n_train + 1):
            if i == 1:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = torch.nn.functional.cross_entropy(net(xt).float(), yt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
        t_train = (time.perf_counter() - t0) / (n_train * tb)
        res[name] = {"parameters": count_parameters(net), "inference_per_s": 1.0 / t_inf,
                     "inference_s_per_subtomogram": t_inf, "train_s_per_subtomogram": t_train,
                     "batch": batch, "train_batch": tb}
        print(f"{name:10s} {count_parameters(net) / 1e6:8.2f} M  inference {1.0 / t_inf:10.1f} subtomograms/s "
              f"({t_inf * 1e3:.3f} ms each, batch {batch})  training {t_train * 1e3:.2f} ms/subtomogram "
              f"(batch {tb})", flush=True)
        del net, opt, x, xt
        if cuda:
            torch.cuda.empty_cache()
    return res


def _table(cells: dict, columns: list[str]) -> str:
    head = "| tilt | SNR | " + " | ".join(columns) + " | paper best |"
    lines = [head, "|" + "---|" * (len(columns) + 3)]
    for (tilt, snr), cell in cells.items():
        paper = PAPER_TABLE.get((tilt, snr))
        best = max(v for v in paper if v is not None) if paper else None
        vals = " | ".join(f"{cell['acc'][c]:.3f}" if c in cell["acc"] else "-" for c in columns)
        lines.append(f"| +-{tilt} | {snr:g} | {vals} | {best if best is not None else '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--learning-curve" in argv:
        from learning_curve import main as learning_curve

        return learning_curve(argv)
    if "--domain-transfer" in argv:
        from domain_transfer import main as domain_transfer

        return domain_transfer(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="settings for a 2-core CPU (< 30 min)")
    ap.add_argument("--throughput", action="store_true", help="only time the networks at 40^3")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=None, help="networks (default: the paper's four + compact3d)")
    ap.add_argument("--cells", nargs="+", default=None, metavar="TILT:SNR", help="e.g. 60:0.1 40:0.03 (default: all)")
    ap.add_argument("--structures-dir", default=None, help="MRC maps (default: ../shared/data/structures)")
    ap.add_argument("--n-classes", type=int, default=None, help="structures used (plus empty)")
    ap.add_argument("--n-per-class", type=int, default=None)
    ap.add_argument("--box", type=int, default=None)
    ap.add_argument("--voxel-size", type=float, default=None)
    ap.add_argument("--width", type=float, default=None)
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--shells", type=int, default=None, help="RIF shells")
    ap.add_argument("--batch", type=int, default=None, help="throughput batch")
    ap.add_argument("--steps", type=int, default=None, help="throughput timed batches")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 with --small)")
    ap.add_argument("--verbose", action="store_true", help="log every training epoch")
    ap.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="mixed precision of the CNNs")
    ap.add_argument("--grad-clip", type=float, default=None, help="gradient-norm clipping of the CNNs (off)")
    ap.add_argument("--skip-svm", action="store_true", help="do not run the RIF-SVM baseline")
    args = ap.parse_args(argv)
    if args.threads or args.small:
        torch.set_num_threads(args.threads or 1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.verbose:
        logging.getLogger("cryomine").setLevel(logging.INFO)
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    models = args.models or [*PAPER_MODELS, "compact3d"]
    result: dict = {"device": str(device), "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}

    if args.throughput:
        batch = args.batch or (512 if device.type == "cuda" else 16)
        steps = args.steps or (10 if device.type == "cuda" else 1)
        print(f"throughput at 40^3, published widths, device {device} ({result['gpu'] or 'CPU'})", flush=True)
        result["throughput"] = throughput(models, device, batch, steps)
        fastest = max(result["throughput"], key=lambda k: result["throughput"][k]["inference_per_s"])
        result["fastest"] = {"model": fastest, "inference_per_s": result["throughput"][fastest]["inference_per_s"]}
        print(json.dumps(result))
        return 0

    small = args.small
    box = args.box or (16 if small else 40)
    voxel = args.voxel_size or (24.0 if small else 9.2)
    max_shift = 1.0 if small else 2.0
    n_per_class = args.n_per_class or (80 if small else 1000)
    args.width = args.width or (0.25 if small else 1.0)
    if args.dropout is None and small:
        args.dropout = 0.3
    args.epochs = args.epochs or (10 if small else 20)
    args.batch_size = args.batch_size or (32 if small else 64)
    args.lr = args.lr or (0.01 if small else 0.005)
    args.shells = args.shells or (8 if small else 14)
    cells = [(t, s) for t in TILTS for s in SNRS]
    if args.cells:
        cells = [(int(c.split(":")[0]), float(c.split(":")[1])) for c in args.cells]
    specs = _specs(args, box, voxel, max_shift)
    settings = {"mode": "small" if small else "full", "box": box, "voxel_size": voxel, "classes": len(specs) + 1,
                "n_per_class": n_per_class, "width": args.width, "dropout": args.dropout, "epochs": args.epochs,
                "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience, "rif_shells": args.shells,
                "rif_l_max": 8, "structures": [Path(s).stem if "/" in s else s for s in specs], "models": models}
    result["settings"] = settings
    print(json.dumps(settings), flush=True)
    t_all = time.perf_counter()
    done: dict = {}
    for tilt, snr in cells:
        t0 = time.perf_counter()
        x, y, names = simulate_cell(specs, tilt, snr, n_per_class, box, voxel, max_shift, args.seed, device)
        t_sim = time.perf_counter() - t0
        cell = run_cell(x, y, names, models, args, device)
        cell["simulate_s"] = t_sim
        cell["seconds"] = time.perf_counter() - t0
        done[(tilt, snr)] = cell
        accs = "  ".join(f"{k} {v:.3f}" for k, v in cell["acc"].items())
        print(f"+-{tilt} SNR {snr:g}: {accs}  ({cell['seconds']:.0f} s, total {time.perf_counter() - t_all:.0f} s)",
              flush=True)
    columns = ([] if args.skip_svm else ["rif-svm"]) + models
    print()
    print(_table(done, columns))
    print("\nseconds per subtomogram (mean over cells): train per epoch (CNN) / fit (RIF-SVM), inference")
    times = {}
    for c in columns:
        tr_key = "train_s_per_subtomogram" if c == "rif-svm" else "train_s_per_subtomogram_epoch"
        tr = float(np.mean([cell["time"][c][tr_key] for cell in done.values()]))
        inf = float(np.mean([cell["time"][c]["inference_s_per_subtomogram"] for cell in done.values()]))
        times[c] = {tr_key: tr, "inference_s_per_subtomogram": inf}
        print(f"  {c:10s} train {tr * 1e3:8.3f} ms   inference {inf * 1e3:8.3f} ms")
    cnn_above = None if args.skip_svm else all(cell["acc"][m] > cell["acc"]["rif-svm"] for cell in done.values()
                                               for m in models)
    result.update(cells=[{"tilt": t, "snr": s, **{k: v for k, v in c.items() if k != "time"}}
                         for (t, s), c in done.items()],
                  times=times, every_cnn_above_rif_svm=cnn_above, seconds=time.perf_counter() - t_all)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
