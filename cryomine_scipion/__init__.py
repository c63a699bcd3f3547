"""CryoMine Scipion plugin: protocols that run the ``cryomine`` core inside Scipion workflows.

The protocols write Scipion sets to particle tables (STAR), run the core's command line with
``runJob`` (so Scipion's GPU slots and cluster queues apply) and turn the core's outputs back
into Scipion objects. The core itself (``cryomine_core``) never imports Scipion.
"""

import os
import shlex
import sys

import pwem
import pyworkflow.utils as pwutils
from pyworkflow import TOMO

from cryomine_core import __version__
from cryomine_scipion.constants import CRYOMINE_COMMAND

_logo = "cryomine_logo.png"
_references = ["Che2018", "Xu2017", "Forster2008", "Xu2012", "Chen2017"]


class Plugin(pwem.Plugin):
    """Plugin entry: variables and the command that runs the CryoMine core."""

    _url = "https://github.com/cryomine/cryomine"
    _processingField = [TOMO]

    @classmethod
    def _defineVariables(cls):
        # Default: the core installed in the same Python as Scipion. An environment variable of
        # the same name (or scipion.conf) overrides it, e.g. to use a separate CUDA environment.
        cls._defineVar(CRYOMINE_COMMAND, f"{shlex.quote(sys.executable)} -m cryomine_core")

    @classmethod
    def getEnviron(cls):
        """Environment for the core's command: the current one (threads are set per protocol)."""
        return pwutils.Environ(os.environ)

    @classmethod
    def getCoreCommand(cls) -> str:
        """The shell words that start the core's CLI (``cryomine`` equivalent)."""
        return cls.getVar(CRYOMINE_COMMAND)

    @classmethod
    def getDistributedCommand(cls, processes: int):
        """The core command run as ``processes`` processes under ``torchrun`` (one per GPU), or None when
        the configured core command is not ``<python> -m cryomine_core`` (then torchrun cannot wrap it)."""
        core = cls.getCoreCommand().strip()
        module = "-m cryomine_core"
        if not core.endswith(module):
            return None
        python = core[: -len(module)].strip()
        return f"{python} -m torch.distributed.run --standalone --nproc-per-node {int(processes)} {module}"

    @classmethod
    def getActiveVersion(cls, *args, **kwargs):
        return __version__

    @classmethod
    def defineBinaries(cls, env):
        # Nothing to download: the core is a Python package installed with the plugin
        # (pip install cryomine, or scipion3 installp -p <path> --devel).
        pass
