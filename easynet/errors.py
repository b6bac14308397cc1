"""User-facing error types: each carries one sentence saying what is wrong and what is expected."""


class EasyNetError(Exception):
    """Base class for errors whose message is shown to users as it is (no traceback)."""


class InputError(EasyNetError, ValueError):
    """An input file, array or parameter is not what EasyNet expects."""


class CheckpointError(EasyNetError):
    """A file is not a usable EasyNet-3D checkpoint."""


class NonFiniteError(EasyNetError):
    """A model produced NaN or inf (a score at prediction, a loss in training): never turned into a verdict."""
