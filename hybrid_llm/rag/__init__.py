"""Retrieval over the user's codebase: discovery, chunking, indexes and hybrid search."""
