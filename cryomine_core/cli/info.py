"""``cryomine info``: versions and the compute device CryoMine would use."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="print versions and the compute device", description=__doc__)
    from cryomine_core.cli import add_device_argument

    add_device_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy
    import torch

    from cryomine_core import __version__
    from cryomine_core.device import select_device

    dev = select_device(args.device)
    info = {
        "cryomine": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(), "cuda_build": torch.version.cuda, "device": str(dev),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(info))
    return 0
