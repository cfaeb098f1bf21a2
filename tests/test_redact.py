"""Secrets in logged requests are replaced before they reach the disk."""

from __future__ import annotations

import pytest

from hybrid_llm.redact import redact, redact_value

PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDQq1XSxG3Zy2b+J4o1lpk7uG0Qyq9zEKbT0Z4N5g4zOAAAAJh5r0yVea9M\n"
    "-----END OPENSSH PRIVATE KEY-----"
)

TOKENS = {
    "aws-access-key": "AKIAIOSFODNN7EXAMPLE",
    "github-token": "ghp_" + "x1Y2z3" * 6,
    "openai-key": "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5q",
    "slack-token": "xoxb-123456789012-abcdefghijkl",
    "google-api-key": "AIza" + "Sy" + "D" * 33,
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}


def test_private_key_block_is_removed_whole_and_the_rest_kept():
    text, count = redact(f"my key:\n{PRIVATE_KEY}\nplease fix the deploy script")
    assert "b3BlbnNzaC1rZXkt" not in text and "PRIVATE KEY-----" not in text
    assert text == "my key:\n[REDACTED:private-key]\nplease fix the deploy script"
    assert count == 1


def test_truncated_private_key_is_removed_to_the_end():
    text, _ = redact("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7")
    assert "MIIEow" not in text


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_provider_tokens_are_replaced_by_their_kind(kind):
    token = TOKENS[kind]
    text, count = redact(f"client = Client('{token}')  # why does this 401?")
    assert token not in text
    assert f"[REDACTED:{kind}]" in text and count == 1
    assert text.startswith("client = Client(") and text.endswith("# why does this 401?")


@pytest.mark.parametrize(
    "line, secret",
    [
        ('password = "hunter2!"', "hunter2!"),
        ("DB_PASSWORD=correcthorse", "correcthorse"),
        ('{"api_key": "c0ffee-1234"}', "c0ffee-1234"),
        ("curl 'https://bob:s3cr3t@example.com/x'", "s3cr3t"),
        ("password=hunter22", "hunter22"),
    ],
)
def test_generic_secret_assignments_are_redacted(line, secret):
    text, count = redact(line)
    assert secret not in text and count == 1


@pytest.mark.parametrize(
    "code",
    [
        "client = connect(api_key=api_key, password=get_password())",
        "token = self.tokenizer.encode(text)",
        "max_tokens = 1024",
        "def count_tokens(text: str) -> int:",
    ],
)
def test_code_that_only_mentions_secrets_is_left_alone(code):
    assert redact(code) == (code, 0)


def test_nested_values_are_redacted_and_counted():
    value = {
        "messages": [{"role": "user", "content": f"token {TOKENS['github-token']}"}],
        "sources": ["a.py:1-3"],
        "n": 3,
    }
    redacted, count = redact_value(value)
    assert TOKENS["github-token"] not in str(redacted)
    assert redacted["sources"] == ["a.py:1-3"] and redacted["n"] == 3
    assert count == 1


@pytest.mark.parametrize(
    "line",
    [
        'AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        '"signing": "JcBQmqZ03tGfARC8y5LRhlzykWFAP7Pm482oFyzF"',
        "session_salt := 'HvoPAeDx24kTaQuZGUELog7q'",
    ],
)
def test_random_literals_assigned_to_any_name_are_redacted(line):
    text, count = redact(line)
    assert "[REDACTED:" in text and count == 1


@pytest.mark.parametrize(
    "code",
    [
        'SECRET_KEY = os.environ["SECRET_KEY"]',
        "TOKEN = None",
        'eos_token = "</s>"',
        'MODEL = "sentence-transformers/all-MiniLM-L6-v2"',
        'DIGEST = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"',
        '"200": "V1PodCertificateRequestList",',
        'if key == "JcBQmqZ03tGfARC8y5LRhlzykWFAP7Pm482oFyzF":',
    ],
)
def test_code_reading_secrets_names_and_digests_are_left_alone(code):
    assert redact(code) == (code, 0)
