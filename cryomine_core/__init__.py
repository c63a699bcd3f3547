"""CryoMine core: mining cryo-electron tomograms with PyTorch.

The engine behind the ``cryomine`` command and the ``cryomine_scipion`` plugin. It never imports
Scipion. Conventions used throughout (see ``cryomine_core.geometry`` for rotations):

- volumes are numpy arrays / torch tensors in **zyx** axis order (``vol[z, y, x]``), as mrcfile
  returns them;
- coordinates and shifts are given in **xyz** order, in **voxels** unless the name says
  otherwise (``..._angstrom``); voxel sizes are in **Å/voxel**;
- angles are in **degrees**.
"""

__version__ = "0.1.0"
