"""CryoMine protocols. Each class defined in a module imported here is discovered by Scipion."""

from cryomine_scipion.protocols.protocol_align import ProtCryomineAlign  # noqa: F401
from cryomine_scipion.protocols.protocol_base import ProtCryomineBase  # noqa: F401
from cryomine_scipion.protocols.protocol_classify import ProtCryomineClassify  # noqa: F401
from cryomine_scipion.protocols.protocol_export_particles import ProtCryomineExportParticles  # noqa: F401
from cryomine_scipion.protocols.protocol_extract import ProtCryomineExtract  # noqa: F401
from cryomine_scipion.protocols.protocol_import_copick import ProtCryomineImportCopick  # noqa: F401
from cryomine_scipion.protocols.protocol_import_dynamo import ProtCryomineImportDynamoTable  # noqa: F401
from cryomine_scipion.protocols.protocol_import_imod import ProtCryomineImportImodCoordinates  # noqa: F401
from cryomine_scipion.protocols.protocol_import_relion import ProtCryomineImportRelionStar  # noqa: F401
from cryomine_scipion.protocols.protocol_import_relion5 import ProtCryomineImportRelion5  # noqa: F401
from cryomine_scipion.protocols.protocol_mra import ProtCryomineMultiRefClassify  # noqa: F401
from cryomine_scipion.protocols.protocol_segment import ProtCryomineSegment  # noqa: F401
from cryomine_scipion.protocols.protocol_simulate import ProtCryomineSimulate  # noqa: F401
from cryomine_scipion.protocols.protocol_subdivide import ProtCryomineSubdivide  # noqa: F401
from cryomine_scipion.protocols.protocol_train_classifier import ProtCryomineTrainClassifier  # noqa: F401
from cryomine_scipion.protocols.protocol_train_segmenter import ProtCryomineTrainSegmenter  # noqa: F401
