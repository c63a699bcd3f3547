"""Exceptions raised by CryoMine for bad input.

Every message names the offending item (file, column, parameter) and says how to fix it, so
that the command line and the Scipion plugin can show it to the user unchanged.
"""


class CryomineError(Exception):
    """Base class of all errors CryoMine raises on purpose (bad input, bad settings)."""


class InputFileError(CryomineError):
    """A file is missing, corrupt, truncated or holds values CryoMine cannot use."""


class TableError(CryomineError):
    """A particle table lacks a required column or holds inconsistent rows."""


class DeviceError(CryomineError):
    """The requested compute device cannot be used."""
