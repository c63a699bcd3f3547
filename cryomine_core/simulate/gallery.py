"""Gallery figure: one particle at several SNRs and tilt ranges (cf. Fig. 4 of Che et al. 2018).

Rows are tilt ranges (each shown as the central xy and xz slice), columns the noise-free
reconstruction and each SNR; the same particle (same pose) throughout, the noise level of each
panel set for that particle (``scope='particle'``). Written with matplotlib's Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cryomine_core.simulate.acquisition import AcquisitionParams
from cryomine_core.simulate.structures import load_structure
from cryomine_core.simulate.subtomograms import SubtomogramSimulator

__all__ = ["make_gallery"]


def make_gallery(out: str | Path, spec: str = "phantom:0", snrs: Sequence[float] = (0.1, 0.05, 0.03, 0.01),
                 tilt_maxima: Sequence[float] = (60.0, 50.0, 40.0), box: int = 40, voxel_size: float = 9.2,
                 seed: int = 0, device=None) -> Path:
    """Write the gallery PNG to ``out`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryomine_core.io.atomic import atomic_path

    structure = load_structure(spec, voxel_size, box)
    gen = torch.Generator().manual_seed(seed)
    classes = torch.zeros(1, dtype=torch.long)
    rows = []
    for tmax in tilt_maxima:
        params = AcquisitionParams(tilt_min_deg=-tmax, tilt_max_deg=tmax)
        sim = SubtomogramSimulator([structure], box, params, device)
        rot, shift = sim.random_poses(classes, torch.Generator().manual_seed(seed))
        panels = []
        for snr in (None, *snrs):
            batch, clean = sim.simulate(classes, rot, shift, gen, snr or 1.0, scope="particle", clean=True)
            panels.append(clean[0] if snr is None else batch.volumes[0])
        rows.append((tmax, panels))
    fig, axes = plt.subplots(2 * len(rows), 1 + len(snrs), figsize=(1.6 * (1 + len(snrs)), 1.6 * 2 * len(rows)))
    c = box // 2
    for r, (tmax, panels) in enumerate(rows):
        for j, vol in enumerate(panels):
            for k, (img, plane) in enumerate(((vol[c], "xy"), (vol[:, c, :], "xz"))):
                ax = axes[2 * r + k, j]
                ax.imshow(img.numpy(), cmap="gray", origin="lower")
                ax.set_xticks([])
                ax.set_yticks([])
                if 2 * r + k == 0:
                    ax.set_title("noise-free" if j == 0 else f"SNR {snrs[j - 1]:g}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"+-{tmax:g} deg, {plane}", fontsize=8)
    fig.suptitle(f"{structure.name}: central slices, {box}^3 at {voxel_size:g} A", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
