"""Show the figures the core wrote for a run (FSC, slices, orientations, training curves, ...).

The core writes its plots as PNG files in the run's extra folder; each protocol lists the ones it
has in ``resultPlots()`` as ``(title, path)``. This viewer opens them in matplotlib windows.
"""

import os

from pyworkflow.viewer import DESKTOP_TKINTER, Viewer

from cryomine_scipion.protocols.protocol_align import ProtCryomineAlign
from cryomine_scipion.protocols.protocol_classify import ProtCryomineClassify
from cryomine_scipion.protocols.protocol_mra import ProtCryomineMultiRefClassify
from cryomine_scipion.protocols.protocol_segment import ProtCryomineSegment
from cryomine_scipion.protocols.protocol_subdivide import ProtCryomineSubdivide
from cryomine_scipion.protocols.protocol_train_classifier import ProtCryomineTrainClassifier
from cryomine_scipion.protocols.protocol_train_segmenter import ProtCryomineTrainSegmenter


def existingPlots(protocol):
    """The ``(title, path)`` pairs of ``protocol.resultPlots()`` whose file exists."""
    return [(title, path) for title, path in protocol.resultPlots() if os.path.exists(path)]


def plotView(title, path):
    """A pyworkflow Plotter showing one PNG (a view with ``show()``)."""
    import matplotlib.image as mpimg
    from pyworkflow.gui.plotter import Plotter

    image = mpimg.imread(path)
    height, width = image.shape[:2]
    plotter = Plotter(windowTitle=title, figsize=(min(12.0, width / 90), min(9.0, height / 90)))
    ax = plotter.createSubPlot(title, "", "")
    ax.imshow(image)
    ax.axis("off")
    return plotter


class CryomineResultsViewer(Viewer):
    """Figures of a CryoMine run: FSC curve, central slices and orientation distribution of an
    average; class galleries; training curves and confusion matrix of a classifier; training
    curves of a segmenter and label overlays on tomogram slices."""

    _label = "CryoMine results"
    _environments = [DESKTOP_TKINTER]
    _targets = [ProtCryomineAlign, ProtCryomineMultiRefClassify, ProtCryomineTrainClassifier, ProtCryomineClassify,
                ProtCryomineTrainSegmenter, ProtCryomineSegment, ProtCryomineSubdivide]

    def _visualize(self, obj, **kwargs):
        plots = existingPlots(obj)
        if not plots:
            return [self.infoMessage("This run has no figures yet (it may still be running or it failed).",
                                     title="CryoMine results")]
        return [plotView(title, path) for title, path in plots]
