"""File input/output at the edges of CryoMine: MRC, particle tables (STAR), Dynamo, IMOD.

Every writer is atomic: data go to a temporary file in the destination folder that is then
renamed over the target, so an interrupted job never leaves a half-written output.
"""

from cryomine_core.io.atomic import atomic_path
from cryomine_core.io.mrc import read_mrc, read_mrc_header, write_mrc

__all__ = ["atomic_path", "read_mrc", "read_mrc_header", "write_mrc"]
