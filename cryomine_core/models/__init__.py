"""Classification networks (``nn.Module`` only) and their registry.

=============  ===============================  ============================  =====================
name           paper                            parameters at 40^3 (23 cls)   first FC input at 40^3
=============  ===============================  ============================  =====================
``dsrf3d``     Xu et al. 2017 (DSRF3D, v1)      ~33.2 M                       64 x 10^3
``dsrf3d-v2``  Che et al. 2018                  ~18.3 M                       128 x 5^3
``rb3d``       Che et al. 2018                  ~263 M                        32 x 20^3
``cb3d``       Che et al. 2018 (C3D-like)       ~61 M                         512 x 2^3
``compact3d``  CryoMine (global avg. pooling)   ~0.4 M                        (box-independent)
``hybrid3d``   CryoMine (compact3d + invariant  ~0.6 M                        (box-independent)
               spherical-harmonic branch)
=============  ===============================  ============================  =====================

:func:`build_model` makes one from its name, the class count and the box; every network records
its build arguments (``model.build_args``) so :func:`build_model` can rebuild it from a saved dict.
To count parameters of a big model without allocating it, build it under ``torch.device('meta')``.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryomine_core.errors import CryomineError
from cryomine_core.models.cb3d import CB3D
from cryomine_core.models.common import SubtomogramNet, as_box, count_parameters
from cryomine_core.models.compact import Compact3D
from cryomine_core.models.dsrf3d import DSRF3D, DSRF3Dv2
from cryomine_core.models.hybrid import Hybrid3D
from cryomine_core.models.rb3d import RB3D

__all__ = ["MODELS", "CB3D", "Compact3D", "DSRF3D", "DSRF3Dv2", "Hybrid3D", "RB3D", "SubtomogramNet", "as_box",
           "build_model", "canonical_name", "count_parameters", "model_names"]

MODELS: dict[str, type[SubtomogramNet]] = {
    "dsrf3d-v2": DSRF3Dv2,
    "dsrf3d": DSRF3D,
    "rb3d": RB3D,
    "cb3d": CB3D,
    "compact3d": Compact3D,
    "hybrid3d": Hybrid3D,
}
#: the paper's four networks, in the order of Table 1
PAPER_MODELS = ("dsrf3d", "dsrf3d-v2", "rb3d", "cb3d")
#: compact3d: the architecture measured to learn from a few hundred subtomograms per class with the
#: ``subtomo`` recipe (validation accuracy 0.34-0.41 after its first epoch of 28 steps on 900
#: subtomograms of 6 complexes, 24^3, SNR 0.1). DSRF3D-v2 (width 0.25 and 0.5, Glorot or He
#: initialisation, AdamW lr 3e-4 to 3e-3, dropout 0.7 or 0.3) stayed at chance for all of the 60-100
#: steps tried on the same data; it is meant for thousands of subtomograms per class (Che et al. 2018).
DEFAULT_MODEL = "compact3d"


def model_names() -> list[str]:
    return list(MODELS)


def canonical_name(name: str) -> str:
    """Registry key for ``name`` (case and ``_``/``-`` insensitive: ``DSRF3D_v2`` -> ``dsrf3d-v2``)."""
    key = str(name).strip().lower().replace("_", "-")
    if key == "dsrf3dv2":
        key = "dsrf3d-v2"
    if key not in MODELS:
        raise CryomineError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}.")
    return key


def build_model(name: str, n_classes: int, box: int | Sequence[int] = 40, **kwargs) -> SubtomogramNet:
    """Build network ``name`` for ``n_classes`` classes and volumes of ``box`` (int or z, y, x).

    ``kwargs`` go to the network (``width``, ``dropout``, ...). Raises CryomineError for an
    unknown name or a box the layer list cannot take.
    """
    cls = MODELS[canonical_name(name)]
    kwargs = {k: v for k, v in kwargs.items() if k not in ("n_classes", "box")}
    try:
        return cls(n_classes=int(n_classes), box=as_box(box), **kwargs)
    except (ValueError, TypeError) as exc:
        raise CryomineError(f"cannot build model '{name}' for {n_classes} classes and box {box}: {exc}. "
                            f"Use a larger box (at least {cls.min_box} per edge) or another model.") from exc
