"""Secret redaction for anything written to disk from a request: keys and tokens never reach the log.

Requests carry the user's code and prompts, which routinely contain credentials pasted by
accident. Patterns follow the published formats of each provider (as secret scanners such as
gitleaks match them) plus generic `password=`/`api_key=` assignments; a match is replaced by
`[REDACTED:<kind>]` so the record still reads naturally and training data keeps its shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PLACEHOLDER = "[REDACTED:{kind}]"

# Ordered: whole blocks first, so a key block is one redaction, not dozens of partial ones.
_TOKEN_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "private-key",
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?"
            r"(?:-----END \1PRIVATE KEY( BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
    ),
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("github-token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b")),
    ("github-token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("openai-key", re.compile(r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{20,}")),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("stripe-key", re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("url-password", re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
]

_SECRET_NAME = (
    r"(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"
    r"|access[_-]?token|auth[_-]?token|client[_-]?secret|private[_-]?key|token)"
)
# `name = "literal"` in any language, or a JSON `"name": "literal"`.
_QUOTED_ASSIGNMENT = re.compile(
    rf"(?i)(\b[\w-]*{_SECRET_NAME}[\"']?\s*[:=]\s*)([\"'])([^\"'\s]{{4,}})\2"
)
# `NAME=value` / `name: value` without quotes, as in .env files, shell and YAML.
_BARE_ASSIGNMENT = re.compile(rf"(?i)(\b[\w-]*{_SECRET_NAME}\s*[:=][ \t]*)([^\s\"',;()\[\]{{}}]{{4,}})")
# A bare value that reads as code (`api_key=settings.api_key`, `password=get_password()`,
# `token=token`) is a reference to a secret, not the secret; redacting it would only damage
# training data. Identifiers with digits (`hunter22`) read as values.
_CODE_REFERENCE = re.compile(r"(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*\(|[A-Za-z_]+)$")


def _is_redacted(value: str) -> bool:
    return value.startswith("[REDACTED:")


def _quoted(match: re.Match[str]) -> str | None:
    prefix, quote, value = match.groups()
    if _is_redacted(value):
        return None
    return f"{prefix}{quote}{_PLACEHOLDER.format(kind='secret')}{quote}"


def _bare(match: re.Match[str]) -> str | None:
    prefix, value = match.groups()
    env_style = prefix.strip().rstrip(":=").strip().isupper()
    if _is_redacted(value) or (_CODE_REFERENCE.match(value) and not env_style):
        return None
    return prefix + _PLACEHOLDER.format(kind="secret")


def redact(text: str) -> tuple[str, int]:
    """Return `text` with secrets replaced, and how many were replaced."""
    count = 0

    def substitute(pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str | None]) -> None:
        nonlocal text, count

        def counted(match: re.Match[str]) -> str:
            nonlocal count
            replacement = replace(match)
            if replacement is None:
                return match.group(0)
            count += 1
            return replacement

        text = pattern.sub(counted, text)

    for kind, pattern in _TOKEN_PATTERNS:
        substitute(pattern, lambda _match, kind=kind: _PLACEHOLDER.format(kind=kind))
    substitute(_QUOTED_ASSIGNMENT, _quoted)
    substitute(_BARE_ASSIGNMENT, _bare)
    return text, count


def redact_value(value):
    """Redact every string inside a JSON-like value (dicts, lists, strings); return (value, count)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        pairs = [redact_value(item) for item in value]
        return [item for item, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, dict):
        pairs = {key: redact_value(item) for key, item in value.items()}
        return {key: item for key, (item, _) in pairs.items()}, sum(n for _, n in pairs.values())
    return value, 0
