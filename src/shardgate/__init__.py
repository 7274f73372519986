"""shardgate: a self-hosted LLM serving platform."""

__all__ = ["__version__"]

__version__ = "0.1.0"
