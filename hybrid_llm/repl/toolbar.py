"""The bottom toolbar: model (and whether it is loading), ONLINE/OFFLINE, index state, tok/s.

It is redrawn twice a second while the prompt waits, so it only reads state the session has
already computed; nothing here may block.
"""

from __future__ import annotations

from hybrid_llm.errors import UserError
from hybrid_llm.repl.session import Session


def toolbar_text(session: Session) -> str:
    parts = [_model_part(session), _network_part(session), _index_part(session)]
    if session.tokens_per_second:
        parts.append(f"{session.tokens_per_second:.1f} tok/s")
    return " | ".join(parts)


def _model_part(session: Session) -> str:
    if not session.model_ready:
        return f"{session.model_name} (loading…)"
    if session.model_problem:
        return f"{session.model_name} (not loaded: /model says why)"
    return session.model_name


def _network_part(session: Session) -> str:
    try:
        return "OFFLINE" if session.is_offline() else "ONLINE"
    except UserError:
        return "network: unknown"


def _index_part(session: Session) -> str:
    if not session.config.rag.enabled:
        return "retrieval off"
    status = session.index_status
    if status is None:
        return "index: checking…" if session.index_checking else "index: unknown"
    if not status.files:
        return "index: empty (/index)"
    freshness = "stale (/index)" if status.stale else "fresh"
    return f"index: {status.files} files, {status.chunks} chunks, {freshness}"
