"""The bottom toolbar: model (and whether it is loading), ONLINE/OFFLINE, index state (and the
progress of embedding in the background), tok/s, and whether the request being typed has its
context prepared ("preparing context…", "context ready").

It is redrawn twice a second while the prompt waits, so it only reads state the session has
already computed; nothing here may block.
"""

from __future__ import annotations

from hybrid_llm.errors import UserError
from hybrid_llm.repl.session import Session
from hybrid_llm.repl.typeahead import TypeAhead


def toolbar_text(session: Session, typeahead: TypeAhead | None = None) -> str:
    parts = [_model_part(session), _network_part(session), _index_part(session)]
    if session.tokens_per_second:
        parts.append(f"{session.tokens_per_second:.1f} tok/s")
    parts.extend(_speculative_part(session))
    if typeahead is not None and typeahead.state:
        parts.append(typeahead.state)
    return " | ".join(parts)


def _speculative_part(session: Session) -> list[str]:
    """The drafting the session's last local answer used and its acceptance rate (none: nothing)."""
    stats = session.speculation
    if stats is None:
        return []
    accepted = f" {stats.acceptance:.0%} accepted" if stats.acceptance is not None else ""
    return [f"speculative: {stats.mode}{accepted}"]


def _model_part(session: Session) -> str:
    if not session.model_ready:
        return f"{session.model_name} (loading…)"
    if session.model_problem:
        return f"{session.model_name} (not loaded: /model says why)"
    return session.model_name


def _network_part(session: Session) -> str:
    from hybrid_llm.net.sandbox import DefaultMode

    try:
        state = "OFFLINE" if session.is_offline() else "ONLINE"
    except UserError:
        return "network: unknown"
    return f"{state} ({DefaultMode.short()})"


def _index_part(session: Session) -> str:
    if not session.config.rag.enabled:
        return "retrieval off"
    status = session.index_status
    if status is None:
        return "index: checking…" if session.index_checking else "index: unknown"
    if not status.files:
        return "index: empty (/index)"
    if session.embedding_in_background:
        embedded, total = session.vectors
        freshness = f"embedding {embedded:,}/{total:,} (keyword search until then)"
    else:
        freshness = "stale (/index)" if status.stale else "fresh"
    return f"index: {status.files} files, {status.chunks} chunks, {freshness}"
