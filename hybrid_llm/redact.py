"""Secret redaction for text that leaves the user's hands: the request log and the code index.

Requests and indexed source files carry credentials pasted by accident (a `settings.py` with
an AWS key). Patterns follow the published formats of each provider (as secret scanners such as
gitleaks match them), plus generic `password=`/`api_key=` assignments and long random-looking
literals assigned to any name; a match is replaced by `[REDACTED:<kind>]` so the text still
reads naturally, training data keeps its shape and code keeps its line numbers (only a private
key block spans lines, and the chunker drops chunks holding one before this runs).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

_PLACEHOLDER = "[REDACTED:{kind}]"

# A PEM/OpenSSH/PGP private-key block, or its start up to the end of a truncated paste.
PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)

# Ordered: whole blocks first, so a key block is one redaction, not dozens of partial ones.
# Each pattern comes with the fixed text every match contains: a pattern starting with `\b`
# is tried at every position, and most chunks of code hold no token at all, so a pattern whose
# text is absent is skipped (bench/redact_bench.py measures the cost against chunking).
_TOKEN_PATTERNS: list[tuple[str, tuple[str, ...], re.Pattern[str]]] = [
    ("private-key", ("PRIVATE KEY",), PRIVATE_KEY),
    ("aws-access-key", ("AKIA", "ASIA", "ABIA", "ACCA"),
     re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("github-token", ("gh",), re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b")),
    ("github-token", ("github_pat_",), re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b")),
    ("openai-key", ("sk-",), re.compile(r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{20,}")),
    ("slack-token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google-api-key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("stripe-key", ("k_live_", "k_test_"), re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    ("jwt", ("eyJ",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("url-password", ("://",), re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
]

# Every spelling in _SECRET_NAME contains one of these (lower-cased): text without any of them
# skips both assignment patterns, which is most chunks of code.
_SECRET_STEMS = ("pass", "pwd", "secret", "key", "token")
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
# Any name given a quoted literal of key-like characters (`AWS_SECRET = "wJalrXUtn…"`,
# `"signing": "…"`): redacted when the literal looks random, whatever the name says. The name
# before the operator is checked by `_after_a_name`.
_LITERAL_ASSIGNMENT = re.compile(r"((?::=|[:=])\s*)([\"'])([A-Za-z0-9+/=_-]{20,})\2")
_NAME_BEFORE_OPERATOR = re.compile(r"[\w-][\"']?\s*$")
# Random base64 of 20-64 characters has a Shannon entropy close to log2(length); names, paths,
# words and hex digests (lower-case, at most 4 bits a character, no upper case) stay well below
# this share of it, or lack one of the three character classes.
_RANDOM_ENTROPY_SHARE = 0.82
_RANDOM_ENTROPY_CAP = 4.3
# Words (`Pod`, `Certificate`, `mean`): generated class names such as "V1PodCertificateRequest"
# pass the entropy test but are mostly words, which random keys are not.
_WORD = re.compile(r"[A-Z]?[a-z]{4,}|[A-Z]{5,}")
_MAX_WORD_SHARE = 0.4
# A quoted value that is a placeholder or markup (`"<your key>"`, `"[UNK]"`, `"${TOKEN}"`,
# `"{api_key}"`), not a secret: tokenizers name their special tokens `eos_token = "</s>"`.
_NOT_A_VALUE = re.compile(r"^(?:<.*>|\[.*\]|\{.*\}|\$.*|%.*)$")
# A bare value that reads as code (`api_key=settings.api_key`, `password=get_password()`,
# `token=token`) is a reference to a secret, not the secret; redacting it would only damage
# training data. Identifiers with digits (`hunter22`) read as values.
_CODE_REFERENCE = re.compile(r"(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*\(|[A-Za-z_]+)$")


def _is_redacted(value: str) -> bool:
    return value.startswith("[REDACTED:")


def _quoted(match: re.Match[str]) -> str | None:
    prefix, quote, value = match.groups()
    if _is_redacted(value) or _NOT_A_VALUE.match(value):
        return None
    return f"{prefix}{quote}{_PLACEHOLDER.format(kind='secret')}{quote}"


def _bare(match: re.Match[str]) -> str | None:
    prefix, value = match.groups()
    # `DB_PASSWORD=x` in a .env file or shell, where any word is a value; `SECRET_KEY =
    # os.environ[...]` (spaces around `=`) is Python reading a secret, not holding one.
    name = prefix.rstrip(" \t")[:-1]
    env_style = name.isupper() and not name[-1:].isspace()
    if _is_redacted(value) or (_CODE_REFERENCE.match(value) and not env_style):
        return None
    return prefix + _PLACEHOLDER.format(kind="secret")


def looks_random(value: str) -> bool:
    """Whether a literal reads as a generated key: upper, lower and digits, and high entropy."""
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value)
            and any(c.isdigit() for c in value)):
        return False
    if sum(len(word) for word in _WORD.findall(value)) > _MAX_WORD_SHARE * len(value):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= min(_RANDOM_ENTROPY_CAP, _RANDOM_ENTROPY_SHARE * math.log2(len(value)))


def _after_a_name(match: re.Match[str]) -> bool:
    """Whether the operator follows a name (`key =`, `"key":`), not `==`, `!=`, `<=` or `>=`."""
    before = match.string[max(0, match.start() - 200):match.start()]
    return _NAME_BEFORE_OPERATOR.search(before) is not None


def _random_literal(match: re.Match[str]) -> str | None:
    prefix, quote, value = match.groups()
    if not looks_random(value) or not _after_a_name(match):
        return None
    return f"{prefix}{quote}{_PLACEHOLDER.format(kind='high-entropy')}{quote}"


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

    for kind, hints, pattern in _TOKEN_PATTERNS:
        if any(hint in text for hint in hints):
            substitute(pattern, lambda _match, kind=kind: _PLACEHOLDER.format(kind=kind))
    lowered = text.lower()
    if any(stem in lowered for stem in _SECRET_STEMS):
        substitute(_QUOTED_ASSIGNMENT, _quoted)
        substitute(_BARE_ASSIGNMENT, _bare)
    substitute(_LITERAL_ASSIGNMENT, _random_literal)
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
