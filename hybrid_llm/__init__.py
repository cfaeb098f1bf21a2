"""hybrid_llm: an offline-first terminal coding assistant."""

__version__ = "0.1.0"
