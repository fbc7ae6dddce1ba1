"""The package's version, a leaf module that anything may import (``sirenvae`` re-exports it)."""

__version__ = "0.1.0"
