"""The benchmark's one error."""


class BenchError(RuntimeError):
    """A benchmark phase failed; the message names the phase and its log file."""
