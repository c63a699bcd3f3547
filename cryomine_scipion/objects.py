"""Scipion objects of the CryoMine plugin (discovered by pwem from this module)."""

import json

from pwem.objects import EMObject
from pyworkflow.object import Float, Integer, String


class CryomineModel(EMObject):
    """A trained CryoMine network: the model file and what it expects.

    Records the file the core wrote (``model.pt``), the architecture name, the box edge (voxels)
    and voxel size (Å) of the subtomograms it was trained on, and the class names in the order of
    its outputs. Protocols that apply the model check the box and voxel size against it.
    """

    def __init__(self, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._path = String(kwargs.get("path"))
        self._architecture = String(kwargs.get("architecture"))
        self._boxSize = Integer(kwargs.get("boxSize"))
        self._samplingRate = Float(kwargs.get("samplingRate"))
        self._classNames = String(json.dumps(list(kwargs.get("classNames") or [])))

    def getPath(self):
        return self._path.get()

    def setPath(self, path):
        self._path.set(path)

    def getArchitecture(self):
        return self._architecture.get()

    def setArchitecture(self, name):
        self._architecture.set(name)

    def getBoxSize(self):
        return self._boxSize.get()

    def setBoxSize(self, box):
        self._boxSize.set(box)

    def getSamplingRate(self):
        return self._samplingRate.get()

    def setSamplingRate(self, voxelSize):
        self._samplingRate.set(voxelSize)

    def getClassNames(self):
        return json.loads(self._classNames.get() or "[]")

    def setClassNames(self, names):
        self._classNames.set(json.dumps(list(names)))

    def __str__(self):
        names = self.getClassNames()
        return (f"CryomineModel ({self.getArchitecture()}, box {self.getBoxSize()}, "
                f"{self.getSamplingRate() or 0:.2f} Å/voxel, {len(names)} classes)")
