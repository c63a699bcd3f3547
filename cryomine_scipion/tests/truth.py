"""Ground-truth checks shared by the Scipion workflow tests."""

import numpy as np


def coordinate_hits(coordinates, instances: dict) -> tuple[set, int, int]:
    """Match picked coordinates to the simulator's instance maps.

    ``coordinates``: a SetOfCoordinates3D; ``instances``: tomogram id -> ``(Z, Y, X)`` int instance
    map (0 = background). A coordinate hits the particle whose voxel it falls in (bottom-left-corner
    position, rounded). Returns ``(hits {(tomo id, particle id)}, coordinates, true particles)``.
    """
    from tomo.constants import BOTTOM_LEFT_CORNER

    n_true = sum(len(np.unique(v)) - 1 for v in instances.values())
    hits, n_pred = set(), 0
    for coord in coordinates.iterCoordinates():
        n_pred += 1
        x, y, z = (int(round(v)) for v in coord.getPosition(BOTTOM_LEFT_CORNER))
        label = int(instances[coord.getTomoId()][z, y, x])
        if label:
            hits.add((coord.getTomoId(), label))
    return hits, n_pred, n_true
