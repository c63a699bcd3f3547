"""CryoMine viewers (one module per kind of result)."""

from cryomine_scipion.viewers.viewer_plots import CryomineResultsViewer  # noqa: F401
