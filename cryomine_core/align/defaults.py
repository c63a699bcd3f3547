"""Default search settings of the alignment commands, one source for the CLI, the job functions and
the Scipion protocols (standard library only, so the CLI's parser can import it cheaply)."""

DEFAULT_ITERATIONS = 4
"""Refinement iterations."""
DEFAULT_ANGULAR_STEP = 12.0
"""Step of the global SO(3) grid, degrees (refined locally to below a degree)."""
DEFAULT_MAX_SHIFT = 4.0
"""Largest shift from the box centre, voxels."""
DEFAULT_CHUNK = 256
"""Subtomograms ``align average`` reads from disk at a time (memory: about chunk x box^3 x 4 bytes, twice)."""
