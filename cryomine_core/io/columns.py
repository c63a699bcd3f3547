"""Every column (STAR label) CryoMine reads or writes, in one place. Standard library only.

CryoMine's particle table is a STAR file with one block, ``particles``, one row per subtomogram (or
coordinate). Column names follow RELION where the meaning is the same (RELION users read the file
as it is); CryoMine's own columns start with ``cm``. Every module and the Scipion plugin import the
names from here; a test (``test_house_rules``) refuses a ``cm...``/``rln...`` name written anywhere
else.

The particle table
------------------

| column | type | meaning | written by |
|---|---|---|---|
| ``rlnImageName`` | str | MRC file of the subtomogram (relative: to the table's folder) | extract, simulate, imports |
| ``cmVoxelSize`` | float | Å per voxel of the subtomogram (and of its coordinates) | all |
| ``cmTiltMin``, ``cmTiltMax`` | float | tilt range of the acquisition, degrees (missing wedge) | imports |
| ``rlnClassNumber`` | int | class, 1-based (0 or absent: unlabelled / unknown) | classify, mra, subdivide |
| ``cmClassName`` | str | human-readable class name | classify, subdivide, simulate |
| ``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi`` | float | orientation, RELION ZYZ Euler angles, degrees | align |
| ``rlnOriginXAngst``, ``...Y...``, ``...Z...`` | float | RELION origin shifts, Å (minus the shift) | align |
| ``cmScore`` | float | score of the last step (alignment score, class confidence) | align, classify |
| ``rlnTomoName`` | str | the tomogram (its identifier, Scipion's tsId) | extract, imports |
| ``cmTomoFile`` | str | MRC file of that tomogram (coordinate tables given to ``extract``) | plugin, imports |
| ``rlnCoordinateX``, ``...Y``, ``...Z`` | float | particle centre, voxels from the first voxel's centre | extract |
| ``cmItemId`` | int | identifier of the item in the caller (Scipion's objId) | plugin |
| ``cmHalfSet`` | int | gold-standard half set, 1 or 2 (RELION: ``rlnRandomSubset``) | align |
| ``cmSnr`` | float | simulated SNR (ground-truth tables only) | simulate |
| ``cmAlignFailed`` | int | 1 where the alignment of the item failed (left out of averages) | align, subdivide |
| ``cmAlignScore`` | float | score of the reference-free re-assignment | subdivide |
| ``cmInputClassNumber``, ``cmInputClassName`` | int, str | class before this step | predict, subdivide |
| ``cmProb<k>`` | float | probability of class ``k`` (1-based) | classify predict |
| ``cmSplit`` | str | train / val / test split of the item | classify train, segment train |
| ``cmLabel`` | int | 0-based training label of the item | classify train |
| ``cmInstanceId`` | int | value of the particle in the simulator's instance map | simulate tomograms |
| ``cmObjectId`` | int | object found by segmentation (its label in the object map) | segment objects |
| ``cmVoxels``, ``cmVolumeA3``, ``cmSolidity`` | int, float | size (voxels, Å³), solidity | segment objects |
| ``cmObjectSplit`` | int | 1 where a segmented object was split from a larger blob | segment objects |
| ``cmVoxelClassName``, ``cmVoxelScore`` | str, float | voxel-vote class, confidence | segment objects |
| ``cmPc1``, ``cmPc2`` | float | 2-D embedding of the item's features (plots) | subdivide |
| ``cmBoxSize`` | int | edge of an annotated box, voxels (segmentation annotations) | segment train |

RELION labels read or written by the converters (:mod:`.relion`, :mod:`.relion5`,
:mod:`.relion_tomograms`) are listed below by block.
"""

# ---- the particle table ------------------------------------------------------------------------
BLOCK = "particles"
IMAGE = "rlnImageName"
VOXEL_SIZE = "cmVoxelSize"
TILT_MIN = "cmTiltMin"
TILT_MAX = "cmTiltMax"
CLASS = "rlnClassNumber"
CLASS_NAME = "cmClassName"
ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
SCORE = "cmScore"
TOMO = "rlnTomoName"
TOMO_FILE = "cmTomoFile"
COORDS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
ITEM_ID = "cmItemId"
HALF_SET = "cmHalfSet"
SNR = "cmSnr"
ALIGN_FAILED = "cmAlignFailed"
ALIGN_SCORE = "cmAlignScore"
INPUT_CLASS = "cmInputClassNumber"
INPUT_CLASS_NAME = "cmInputClassName"
PROB_PREFIX = "cmProb"
SPLIT = "cmSplit"
LABEL = "cmLabel"
INSTANCE = "cmInstanceId"
OBJECT_ID = "cmObjectId"
VOXELS = "cmVoxels"
VOLUME_A3 = "cmVolumeA3"
SOLIDITY = "cmSolidity"
OBJECT_SPLIT = "cmObjectSplit"
VOXEL_CLASS_NAME = "cmVoxelClassName"
VOXEL_SCORE = "cmVoxelScore"
BOX_SIZE = "cmBoxSize"
EMBEDDING = ("cmPc1", "cmPc2")

# ---- RELION 3.1/4 particle files ---------------------------------------------------------------
OPTICS_BLOCK = "optics"
RANDOM_SUBSET = "rlnRandomSubset"
OPTICS_GROUP = "rlnOpticsGroup"
OPTICS_GROUP_NAME = "rlnOpticsGroupName"
PARTICLE_ID = "rlnTomoParticleId"
ORIGINS_PIXELS = ("rlnOriginX", "rlnOriginY", "rlnOriginZ")
IMAGE_PIXEL_SIZE = "rlnImagePixelSize"
PIXEL_SIZE_LABELS = (IMAGE_PIXEL_SIZE, "rlnTomoTiltSeriesPixelSize", "rlnPixelSize", "rlnDetectorPixelSize")
IMAGE_SIZE = "rlnImageSize"
DIMENSIONALITY = "rlnImageDimensionality"
VOLTAGE = "rlnVoltage"
CS = "rlnSphericalAberration"
AMPLITUDE_CONTRAST = "rlnAmplitudeContrast"

# ---- RELION 5 particle files and optimisation sets ---------------------------------------------
CENTERED = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
SUBTOMOGRAM_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
TS_PIXEL_SIZE = "rlnTomoTiltSeriesPixelSize"
PARTICLE_NAME = "rlnTomoParticleName"
OPTIMISATION_BLOCK = "optimisation_set"
PARTICLES_FILE = "rlnTomoParticlesFile"
TOMOGRAMS_FILE = "rlnTomoTomogramsFile"

# ---- RELION 5 tomograms.star -------------------------------------------------------------------
TOMOGRAMS_BLOCK = "global"
TOMO_SIZES = ("rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ")
TOMO_BINNING = "rlnTomoTomogramBinning"
TOMO_HAND = "rlnTomoHand"
TOMO_RECONSTRUCTION = "rlnTomoReconstructedTomogram"
TILT_SERIES_STAR = "rlnTomoTiltSeriesStarFile"
NOMINAL_TILT = "rlnTomoNominalStageTiltAngle"
