"""Small pictures the plugin draws itself from a run's MRC outputs (matplotlib, Agg)."""

import numpy as np

from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.mrc import read_mrc


def writeLabelOverlay(tomogramFile, labelFile, pngPath, classNames=None, slab=5):
    """PNG of the tomogram's central z slab (mean of ``slab`` slices) with its label map in colour.

    Args:
        tomogramFile, labelFile: MRC files of the same shape (z, y, x).
        classNames: ``{label value: name}`` for the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tomo, _ = read_mrc(tomogramFile)
    labels, _ = read_mrc(labelFile)
    z0 = tomo.shape[0] // 2
    lo, hi = max(0, z0 - slab // 2), min(tomo.shape[0], z0 + slab // 2 + 1)
    image = tomo[lo:hi].mean(0)
    lab = np.rint(labels[z0]).astype(int)
    values = [int(v) for v in np.unique(labels) if v > 0]
    cmap = plt.get_cmap("tab10")
    colour = np.zeros(lab.shape + (4,))
    for i, v in enumerate(values):
        colour[lab == v] = (*cmap(i % 10)[:3], 0.45)
    fig, ax = plt.subplots(figsize=(7, 7 * image.shape[0] / max(image.shape[1], 1)))
    ax.imshow(image, cmap="gray")
    ax.imshow(colour)
    ax.set_axis_off()
    ax.set_title(f"z = {z0} (slab of {hi - lo}); labels in colour")
    names = classNames or {}
    ax.legend(handles=[Patch(color=cmap(i % 10), label=names.get(v, f"label {v}")) for i, v in enumerate(values)],
              loc="upper right", fontsize=8)
    with atomic_path(pngPath) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return pngPath
