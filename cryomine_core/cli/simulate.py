"""``cryomine simulate``: simulated subtomograms, crowded tomograms and an SNR / tilt gallery.

``subtomograms`` writes DIR/particles.star (ground truth), DIR/subtomograms/*.mrc, DIR/maps/<class>.mrc
and DIR/metrics.json; ``tomograms`` writes tomograms, label and instance maps, a coordinates table
and metrics; ``gallery`` writes a PNG of central slices for several SNRs and tilt ranges. Structures
are MRC maps, PDB/mmCIF models, fetched catalog names (``cryomine structures``) or offline phantoms
(``phantom:0``, ``phantom:1``, ...).
"""

from __future__ import annotations

import json

_DEFAULT_SPECS = ["phantom:0", "phantom:1", "phantom:2"]


def _acquisition_arguments(p) -> None:
    g = p.add_argument_group("acquisition")
    g.add_argument("--tilt-range", nargs=2, type=float, default=[-60.0, 60.0], metavar=("MIN", "MAX"),
                   help="tilt range in degrees (default: -60 60)")
    g.add_argument("--tilt-step", type=float, default=2.0, help="tilt increment in degrees (default: 2)")
    g.add_argument("--voltage", type=float, default=300.0, help="acceleration voltage, kV (default: 300)")
    g.add_argument("--cs", type=float, default=2.0, help="spherical aberration, mm (default: 2)")
    g.add_argument("--defocus", type=float, default=5.0, help="defocus in um, positive = underfocus (default: 5)")
    g.add_argument("--amplitude-contrast", type=float, default=0.07, help="amplitude contrast (default: 0.07)")
    g.add_argument("--no-ctf", action="store_true", help="do not apply the CTF")
    g.add_argument("--no-mtf", action="store_true", help="do not apply the detector MTF")
    g.add_argument("--reconstruction", choices=["dfi", "wbp"], default="dfi",
                   help="direct Fourier inversion (default) or weighted back-projection")


def _params(args):
    from cryomine_core.simulate.acquisition import AcquisitionParams

    return AcquisitionParams(
        tilt_min_deg=args.tilt_range[0], tilt_max_deg=args.tilt_range[1], tilt_step_deg=args.tilt_step,
        voltage_kv=args.voltage, cs_mm=args.cs, defocus_um=args.defocus, amplitude_contrast=args.amplitude_contrast,
        apply_ctf=not args.no_ctf, apply_mtf=not args.no_mtf, reconstruction=args.reconstruction)


def register(sub) -> None:
    from cryomine_core.cli import add_device_argument

    p = sub.add_parser("simulate", help="simulate subtomograms, tomograms and galleries with ground truth",
                       description=__doc__)
    sp = p.add_subparsers(dest="simulate_command", metavar="WHAT")
    sp.required = True

    s = sp.add_parser("subtomograms", help="simulated subtomograms + ground-truth particle table",
                      description="Simulated subtomograms (DIR/subtomograms/*.mrc), their ground-truth particle table "
                                  "(DIR/particles.star), the noise-free map of each class (DIR/maps/<class>.mrc) and "
                                  "DIR/metrics.json. Contrast: the maps' density is bright; with the CTF (default, "
                                  "not corrected, as in raw tomograms) the particles show it dark, so the maps have "
                                  "the opposite contrast of the particles: align to them with 'cryomine align ... "
                                  "--invert-reference' (with --no-ctf both are bright).")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--structures", nargs="*", default=None, metavar="SPEC",
                   help="classes: MRC maps, PDB/mmCIF files, fetched names or phantom:N, optionally NAME=SPEC "
                        f"(default: {' '.join(_DEFAULT_SPECS)})")
    s.add_argument("--n-per-class", type=int, default=100, help="particles per class (default: 100)")
    s.add_argument("--snr", type=float, default=0.1, help="SNR after reconstruction (default: 0.1)")
    s.add_argument("--box", type=int, default=40, help="box edge in voxels (default: 40)")
    s.add_argument("--voxel-size", type=float, default=9.2, help="Å per voxel (default: 9.2)")
    s.add_argument("--max-shift", type=float, default=2.0, help="largest random shift per axis, voxels (default: 2)")
    s.add_argument("--empty-class", action="store_true", help="add a background-only class named 'empty'")
    s.add_argument("--snr-scope", choices=["dataset", "particle"], default="dataset",
                   help="one noise level for the data set (default) or one per particle")
    s.add_argument("--batch-size", type=int, default=64, help="particles per batch (default: 64)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _acquisition_arguments(s)
    add_device_argument(s)
    s.set_defaults(func=run_subtomograms)

    t = sp.add_parser("tomograms", help="crowded tomograms + label/instance maps and coordinates")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--structures", nargs="*", default=None, metavar="SPEC",
                   help=f"particle classes (default: {' '.join(_DEFAULT_SPECS)})")
    t.add_argument("--size", nargs=3, type=int, default=[512, 512, 200], metavar=("X", "Y", "Z"),
                   help="tomogram size in voxels, x y z (default: 512 512 200; the array is (z, y, x))")
    t.add_argument("--n-tomograms", type=int, default=1, help="number of tomograms (default: 1)")
    t.add_argument("--occupancy", type=float, default=0.15,
                   help="target fraction of the volume filled by particles' bounding spheres (default: 0.15)")
    t.add_argument("--vesicles", type=int, default=0, help="membrane vesicles per tomogram (default: 0)")
    t.add_argument("--membrane-thickness", type=float, default=40.0, help="membrane thickness, Å (default: 40)")
    t.add_argument("--snr", type=float, default=0.1, help="SNR of the reconstruction (default: 0.1)")
    t.add_argument("--voxel-size", type=float, default=9.2, help="Å per voxel (default: 9.2)")
    t.add_argument("--save-density", action="store_true", help="also write the noise-free density")
    t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _acquisition_arguments(t)
    add_device_argument(t)
    t.set_defaults(func=run_tomograms)

    g = sp.add_parser("gallery", help="PNG of central slices for several SNRs and tilt ranges (Che et al. Fig. 4)")
    g.add_argument("--out", required=True, help="PNG file to write")
    g.add_argument("--structure", default="phantom:0", help="structure spec (default: phantom:0)")
    g.add_argument("--snrs", nargs="+", type=float, default=[0.1, 0.05, 0.03, 0.01], help="SNRs (columns)")
    g.add_argument("--tilt-maxima", nargs="+", type=float, default=[60.0, 50.0, 40.0],
                   help="symmetric tilt ranges +-A (rows)")
    g.add_argument("--box", type=int, default=40, help="box edge in voxels (default: 40)")
    g.add_argument("--voxel-size", type=float, default=9.2, help="Å per voxel (default: 9.2)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_argument(g)
    g.set_defaults(func=run_gallery, out_kind="file")


def _specs(args) -> list[str]:
    return _DEFAULT_SPECS if args.structures is None else list(args.structures)


def run_subtomograms(args) -> int:
    from cryomine_core.device import select_device
    from cryomine_core.simulate.datasets import simulate_subtomogram_dataset

    params = _params(args)
    params.validate()
    metrics = simulate_subtomogram_dataset(
        args.out, _specs(args), args.n_per_class, args.snr, box=args.box, voxel_size=args.voxel_size,
        max_shift=args.max_shift, include_empty=args.empty_class, params=params, seed=args.seed,
        device=select_device(args.device), batch_size=args.batch_size, snr_scope=args.snr_scope)
    keys = ("n_particles", "classes", "snr_requested", "snr_realised", "subtomograms_per_s")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0


def run_tomograms(args) -> int:
    from cryomine_core.device import select_device
    from cryomine_core.simulate.tomograms import simulate_tomogram_dataset

    params = _params(args)
    params.validate()
    x, y, z = args.size
    metrics = simulate_tomogram_dataset(
        args.out, _specs(args), shape=(z, y, x), n_tomograms=args.n_tomograms, occupancy=args.occupancy,
        n_vesicles=args.vesicles, membrane_thickness_angstrom=args.membrane_thickness, snr=args.snr,
        voxel_size=args.voxel_size, params=params, seed=args.seed, device=select_device(args.device),
        save_density=args.save_density)
    keys = ("n_tomograms", "n_particles", "classes", "snr_requested", "snr_realised", "seconds_per_tomogram")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0


def run_gallery(args) -> int:
    from cryomine_core.device import select_device
    from cryomine_core.simulate.gallery import make_gallery

    path = make_gallery(args.out, args.structure, snrs=args.snrs, tilt_maxima=args.tilt_maxima, box=args.box,
                        voxel_size=args.voxel_size, seed=args.seed, device=select_device(args.device))
    print(json.dumps({"gallery": str(path)}))
    return 0
