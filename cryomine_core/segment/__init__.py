"""Tomogram segmentation from a few annotations: voxel U-Net, grouping into objects, object classes.

- :mod:`.network`: :class:`UNet3D` (binary or multi-class, any input size).
- :mod:`.data`: annotated boxes, training patches with augmentation.
- :mod:`.training`: :func:`train_segmenter` (``cryomine segment train``) on the shared training loop.
- :mod:`.tiling`: :func:`predict_probabilities`, tiled inference equal to whole-volume inference.
- :mod:`.predicting`: :func:`predict_tomograms` (``cryomine segment predict``).
- :mod:`.grouping`: :func:`group_objects` (connected components, convex splitting, size filters).
- :mod:`.objects`: :func:`find_objects` (``cryomine segment objects``): object table, counts, evaluation.
- :mod:`.object_classifier`: sub-volume CNN classification of the objects (step 3).
- :mod:`.evaluate`: voxel Dice, object-level precision/recall/F1.
"""

from cryomine_core.segment.evaluate import dice_per_class, match_objects
from cryomine_core.segment.grouping import GroupingParams, group_objects, solidity, split_component
from cryomine_core.segment.model_file import load_segmenter, save_segmenter
from cryomine_core.segment.network import UNet3D
from cryomine_core.segment.objects import find_objects
from cryomine_core.segment.predicting import predict_tomograms
from cryomine_core.segment.tiling import predict_probabilities
from cryomine_core.segment.training import train_segmenter

__all__ = ["GroupingParams", "UNet3D", "dice_per_class", "find_objects", "group_objects", "load_segmenter",
           "match_objects", "predict_probabilities", "predict_tomograms", "save_segmenter", "solidity",
           "split_component", "train_segmenter"]
