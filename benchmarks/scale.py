"""Scale benchmark: time and peak memory of the streamed commands as the set grows, 1 vs 2 processes.

    python benchmarks/scale.py --small     # 2-core CPU, < 30 min: N = 10^3, 10^4, 10^5 at 16^3
    python benchmarks/scale.py             # N = 10^3 .. 10^6 at 32^3 (a workstation / GPU node)

For each N a set of N small subtomograms (noise with random poses and two classes; the figures
are about cost, not accuracy) is written as **one volume stack** (``k@set.mrcs``, see ``cryomine
table stack``), then each command runs as its own process and its wall time and peak resident
memory (``getrusage`` of the child) are recorded:

- ``align average`` (streamed, ``--chunk 256``);
- ``classify predict`` with a small compact3d trained once on 200 of the subtomograms;
- ``align refine`` (streamed, one iteration of the global search from the reference-free start,
  ``--angular-step 40``, a coarse grid so that 10^5 fits the CPU budget) -- up to ``--refine-max``;
- ``align mra --classes 2`` (streamed, one iteration, the same grid) -- up to ``--mra-max`` (10^4 with
  ``--small``);
- ``subdivide --features rif --clusters 2`` (features in batches; clustering in memory, with the
  bounded-memory path above 50,000) -- only up to ``--subdivide-max`` (10^4 with ``--small``).

Reported per command: seconds and peak RSS per N, the per-particle time and the RSS ratios
between consecutive N (flat memory: RSS ratio near 1 while N grows 10x), and, for ``align
average``, ``align refine``, ``align mra`` and ``classify predict`` at one N (10^4 with ``--small``, else
the largest), 1 process against 2 under ``torchrun`` (gloo on CPUs): the speed-up and the agreement
of the two results (largest map difference, largest pose difference, identical classes).
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_set(folder: Path, n: int, box: int, seed: int = 0) -> Path:
    """``n`` noise subtomograms in one stack, with random poses, classes 1/2 and a +-60 tilt range."""
    from cryomine_core.io import table as T
    from cryomine_core.io.mrc import write_volume_stack

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stack = folder / "set.mrcs"
    write_volume_stack(stack, (rng.standard_normal((box,) * 3, dtype=np.float32) for _ in range(n)), n,
                       (box, box, box), 10.0)
    df = pd.DataFrame({T.IMAGE: [f"{k}@set.mrcs" for k in range(1, n + 1)], T.VOXEL_SIZE: 10.0, T.TILT_MIN: -60.0,
                       T.TILT_MAX: 60.0, T.CLASS: 1 + (np.arange(n) % 2), T.CLASS_NAME: np.where(np.arange(n) % 2,
                                                                                               "b", "a"),
                       "rlnAngleRot": rng.uniform(-180, 180, n), "rlnAngleTilt": rng.uniform(0, 180, n),
                       "rlnAnglePsi": rng.uniform(-180, 180, n)})
    T.write_table(folder / "particles.star", df)
    return folder / "particles.star"


def run(cmd: list[str], threads: int) -> dict:
    """Run one command as a child process: its wall time and peak RSS (MB; of the largest child)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0}


def _measure(cmd: list[str], threads: int) -> dict:
    """:func:`run` from a fresh process of its own (``getrusage`` of the children keeps the largest peak
    so far, so each command needs a parent that ran nothing else)."""
    out = subprocess.run([sys.executable, __file__, "--measure", json.dumps(cmd), "--threads", str(threads)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:] + out.stdout[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def core(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryomine_core", *args]


def torchrun(n: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), "-m",
            "cryomine_core", *args]


def _max_diff(a: Path, b: Path) -> float:
    from cryomine_core.io.mrc import read_mrc

    x, y = read_mrc(a)[0], read_mrc(b)[0]
    return float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-30))


#: global-search step of the align rows (degrees): coarse, the figures are about cost
ALIGN_STEP = 40


def _align_args(table: Path, out: Path) -> list[str]:
    return ["--in", str(table), "--out", str(out), "--iterations", "1", "--angular-step", str(ALIGN_STEP),
            "--device", "cpu", "--chunk", "256"]


def _pose_agreement(one: Path, two: Path, volume: str, classes: bool) -> dict:
    """Largest pose difference (degrees), identical classes and the map difference of two aligned runs."""
    from cryomine_core.geometry import rotation_angle_deg
    from cryomine_core.io import table as T
    from cryomine_core.io.poses import table_poses

    a, b = T.read_table(one / "particles.star"), T.read_table(two / "particles.star")
    ra, _ = table_poses(a)
    rb, _ = table_poses(b)
    same = bool((a[T.CLASS].to_numpy() == b[T.CLASS].to_numpy()).all()) if classes else None
    return {"max_pose_difference_deg": float(rotation_angle_deg(ra.transpose(-1, -2) @ rb).max()),
            "same_classes": same, "max_relative_difference": _max_diff(one / volume, two / volume)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="2-core CPU settings (< 30 min)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="set sizes N")
    ap.add_argument("--box", type=int, default=None, help="subtomogram edge (small: 16, full: 32)")
    ap.add_argument("--subdivide-max", type=int, default=None, help="largest N for subdivide (small: 10^4)")
    ap.add_argument("--refine-max", type=int, default=None, help="largest N for align refine (default: every N)")
    ap.add_argument("--mra-max", type=int, default=None, help="largest N for align mra (small: 10^4)")
    ap.add_argument("--compare-n", type=int, default=None,
                    help="N of the 1 vs 2 processes comparison (small: 10^4; full: the largest N)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    ap.add_argument("--workdir", default=None, help="where the sets go (default: a temporary folder)")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: run one command, print JSON
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(run(json.loads(args.measure), args.threads)))
        return 0
    sizes = args.sizes or ([1_000, 10_000, 100_000] if args.small else [1_000, 10_000, 100_000, 1_000_000])
    box = args.box or (16 if args.small else 32)
    sub_max = args.subdivide_max or (10_000 if args.small else 100_000)
    refine_max = args.refine_max or max(sizes)
    mra_max = args.mra_max or (10_000 if args.small else 100_000)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cryomine-scale-"))
    settings = {"mode": "small" if args.small else "full", "sizes": sizes, "box": box, "subdivide_max": sub_max,
                "refine_max": refine_max, "mra_max": mra_max, "align_grid_deg": ALIGN_STEP,
                "compare_n": args.compare_n or (10_000 if args.small else max(sizes)),
                "threads_per_process": args.threads, "storage": "one volume stack per set", "workdir": str(work)}
    print(json.dumps(settings), flush=True)
    t_start = time.perf_counter()
    rows: dict = {"align average": {}, "align refine": {}, "align mra": {}, "classify predict": {}, "subdivide": {}}
    model = None
    for n in sizes:
        t0 = time.perf_counter()
        table = make_set(work / f"n{n}", n, box)
        print(f"N={n}: set written in {time.perf_counter() - t0:.0f} s", flush=True)
        if model is None:
            small = make_set(work / "train", 200, box, seed=1)
            _measure(core("classify", "train", "--in", str(small), "--out", str(work / "model"), "--epochs", "1",
                          "--model", "compact3d", "--width", "0.25", "--min-per-class", "2", "--device", "cpu"),
                     args.threads)
            model = str(work / "model" / "model.pt")
        jobs = {"align average": core("align", "average", "--in", str(table), "--out", str(work / f"avg{n}"),
                                      "--device", "cpu", "--chunk", "256"),
                "classify predict": core("classify", "predict", "--in", str(table), "--model", model, "--out",
                                         str(work / f"pred{n}"), "--device", "cpu")}
        if n <= refine_max:
            jobs["align refine"] = core("align", "refine", *_align_args(table, work / f"ref{n}"))
        if n <= mra_max:
            jobs["align mra"] = core("align", "mra", *_align_args(table, work / f"mra{n}"), "--classes", "2")
        if n <= sub_max:
            jobs["subdivide"] = core("subdivide", "--in", str(table), "--out", str(work / f"sub{n}"), "--features",
                                     "rif", "--clusters", "2", "--device", "cpu", "--no-plots")
        for name, cmd in jobs.items():
            r = _measure(cmd, args.threads)
            rows[name][n] = {"seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                             "ms_per_particle": 1000.0 * r["seconds"] / n}
            print(f"N={n} {name}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"{1000.0 * r['seconds'] / n:.2f} ms/particle", flush=True)
    ratios = {}
    rows = {name: per_n for name, per_n in rows.items() if per_n}
    for name, per_n in rows.items():
        ns = sorted(per_n)
        ratios[name] = [{"from": a, "to": b, "time_per_particle_ratio": per_n[b]["ms_per_particle"] /
                         per_n[a]["ms_per_particle"], "peak_rss_ratio": per_n[b]["peak_rss_mb"] /
                         per_n[a]["peak_rss_mb"]} for a, b in zip(ns, ns[1:])]
    n = args.compare_n or (10_000 if args.small else max(sizes))
    if n not in sizes:
        raise SystemExit(f"--compare-n {n} is not one of --sizes {sizes}")
    table = work / f"n{n}" / "particles.star"
    two = {}
    avg2 = _measure(torchrun(2, "align", "average", "--in", str(table), "--out", str(work / "avg2"), "--device",
                             "cpu", "--chunk", "256"), args.threads)
    two["align average"] = {"n": n, "seconds_1": rows["align average"][n]["seconds"], "seconds_2": avg2["seconds"],
                            "speedup": rows["align average"][n]["seconds"] / avg2["seconds"],
                            "max_relative_difference": _max_diff(work / f"avg{n}" / "average.mrc",
                                                                 work / "avg2" / "average.mrc")}
    pred2 = _measure(torchrun(2, "classify", "predict", "--in", str(table), "--model", model, "--out",
                              str(work / "pred2"), "--device", "cpu"), args.threads)
    from cryomine_core.io import table as T

    a, b = T.read_table(work / f"pred{n}" / "particles.star"), T.read_table(work / "pred2" / "particles.star")
    two["classify predict"] = {"n": n, "seconds_1": rows["classify predict"][n]["seconds"],
                               "seconds_2": pred2["seconds"],
                               "speedup": rows["classify predict"][n]["seconds"] / pred2["seconds"],
                               "same_classes": bool((a[T.CLASS].to_numpy() == b[T.CLASS].to_numpy()).all()),
                               "max_probability_difference": float(np.abs(a["cmProb1"].to_numpy(float)
                                                                          - b["cmProb1"].to_numpy(float)).max())}
    for name, short in (("align refine", "ref"), ("align mra", "mra")):
        if n not in rows.get(name, {}):
            continue
        r2 = _measure(torchrun(2, *name.split(), *_align_args(table, work / f"{short}2"),
                               *(["--classes", "2"] if short == "mra" else [])), args.threads)
        two[name] = {"n": n, "seconds_1": rows[name][n]["seconds"], "seconds_2": r2["seconds"],
                     "speedup": rows[name][n]["seconds"] / r2["seconds"],
                     **_pose_agreement(work / f"{short}{n}", work / f"{short}2",
                                       "average.mrc" if short == "ref" else "class_001.mrc", short == "mra")}
    for name, r in two.items():
        print(f"{name} at N={n}: 1 process {r['seconds_1']:.1f} s, 2 processes {r['seconds_2']:.1f} s "
              f"(speed-up {r['speedup']:.2f})", flush=True)
    print(json.dumps({"settings": settings, "runs": rows, "ratios": ratios, "two_processes": two,
                      "seconds": time.perf_counter() - t_start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
