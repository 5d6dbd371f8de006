"""The generator's one error."""


class GenerationError(ValueError):
    """A synthetic data set cannot be generated with the arguments given."""
