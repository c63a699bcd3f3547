"""Names shared by the CryoMine plugin."""

# Plugin variable: the command that runs the CryoMine core's CLI. Set it (in scipion.conf or the
# environment) to run the core from another environment, e.g. "conda run -n cryomine cryomine"
# or "/opt/cryomine-env/bin/cryomine".
CRYOMINE_COMMAND = "CRYOMINE_COMMAND"

# Files the protocols exchange with the core (inside each run's extra/ folder).
INPUT_TABLE = "input_particles.star"
OUTPUT_TABLE = "particles.star"
#: the core's checkpoint in a step's output folder (train classifier/segmenter, align, MRA): "Continue"
#: passes --resume when it is there
CHECKPOINT_FILE = "checkpoint.pt"
METRICS = "metrics.json"
#: folders of the segment protocol's extra/: the probability maps, and the objects found in them
SEGMENT_PREDICTION_DIR, SEGMENT_OBJECTS_DIR = "prediction", "objects"
