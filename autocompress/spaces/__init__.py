"""Search spaces and the Strategy they produce."""

from autocompress.spaces.space import SearchSpace, SpaceOptions
from autocompress.spaces.strategy import Strategy

__all__ = ["SearchSpace", "SpaceOptions", "Strategy"]
