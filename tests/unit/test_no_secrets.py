"""No secret in the repository: every file git tracks (or would add: untracked, not ignored) is
scanned for private keys, cloud keys, Kafka SASL passwords, bearer tokens, password hashes and
high-entropy values assigned to secret-looking names. Documented placeholders are allowed."""

from __future__ import annotations

import math
import random
import re
import string
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Values that say they are not a secret: `<API secret>`, `${VAR}`, REPLACE..., example...
PLACEHOLDER = re.compile(
    r"^$|[<>]|\$\{|\$\(|REPLACE|example|changeme|xxxx|\.\.\.|placeholder|your[-_ ]", re.I
)
# (file, exact text) pairs that look like secrets on purpose: test fixtures, documented.
ALLOWED = frozenset(
    {
        # the properties parser's test: a value holding '=' and ':'
        ("tests/unit/test_config.py", "sasl." + "password=a=b:c"),
    }
)

SECRET_NAME = r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"
PATTERNS: dict[str, re.Pattern[str]] = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(
        r"aws_?secret_?access_?key\w*\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9/+=]{40})\b", re.I
    ),
    "SASL password": re.compile(r"sasl\.password\s*[:=]\s*(?P<value>[^\s\\\"']*)", re.I),
    "bearer token": re.compile(r"\bBearer\s+(?P<value>[A-Za-z0-9\-._~+/]{20,}=*)"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z\-_]{35}\b"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[\w-]{10,}"),
    "password hash": re.compile(
        r"pbkdf2_sha256\$\d+\$(?P<value>[A-Za-z0-9+/=]{8,}\$[A-Za-z0-9+/=]{20,})"
    ),
    "secret assignment": re.compile(
        rf"\b\w*{SECRET_NAME}\w*[\"']?\s*(?::|=|:=)\s*[\"'](?P<value>[^\"'\s]{{16,}})[\"']",
        re.I,
    ),
}
# Values assigned to secret-looking names are flagged only when they look random: dense in
# information and mixing character classes ("a-long-cookie-secret-for-tests" is neither).
ENTROPY_BITS_PER_CHAR = 3.5
ENTROPY_CHECKED = {"secret assignment", "bearer token"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text[:60]}"


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_random(value: str) -> bool:
    classes = sum(any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit))
    return entropy(value) >= ENTROPY_BITS_PER_CHAR and classes >= 2


def scan_text(path: str, text: str) -> list[Finding]:
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                value = match.groupdict().get("value")
                if value is not None and PLACEHOLDER.search(value):
                    continue
                if kind in ENTROPY_CHECKED and not looks_random(value or ""):
                    continue
                if kind == "secret assignment" and (value or "").startswith("pbkdf2_"):
                    continue  # a password hash: judged by its own pattern
                if (path, match.group(0)) in ALLOWED:
                    continue
                findings.append(Finding(path, number, kind, match.group(0)))
    return findings


def scan_file(root: Path, relative: str) -> list[Finding]:
    data = (root / relative).read_bytes()
    if b"\x00" in data[:8192]:
        return []  # binary
    return scan_text(relative, data.decode("utf-8", errors="replace"))


def repository_files(root: Path) -> list[str]:
    """Files git tracks, plus the untracked ones it would add (not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    return sorted({p for p in listed.split("\0") if p and (root / p).is_file()})


def test_no_file_in_the_repository_holds_a_secret() -> None:
    files = repository_files(REPO)
    assert "README.md" in files and "pyproject.toml" in files
    assert ".streamlit/secrets.toml" not in files, "the real secrets file must stay git-ignored"
    findings = [f for path in files for f in scan_file(REPO, path)]
    assert not findings, "secret-looking text:\n" + "\n".join(map(str, findings))


def _random(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    rng = random.Random(length)  # planted values are built here, never written in the source
    return "".join(rng.choice(alphabet) for _ in range(length))


# Planted secrets, assembled at run time so that this file itself holds none.
PLANTED = {
    "private key": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow...\n",
    "OpenSSH key": "-----BEGIN " + "OPENSSH PRIVATE KEY-----",
    "AWS access key id": "aws_access_key_id = " + "AKIA" + _random(16, string.ascii_uppercase),
    "AWS secret key": "aws_secret_access_key=" + _random(40),
    "SASL password": "sasl." + "password=" + _random(24),
    "SASL short password": "sasl." + "password = hunter2",
    "bearer token": 'headers = {"Authorization": "Bearer ' + _random(32) + '"}',
    "GitHub token": "gh" + "p_" + _random(36),
    "Slack token": "xox" + "b-" + _random(24),
    "JSON web token": "eyJ" + _random(20) + ".eyJ" + _random(30) + "." + _random(20),
    "password hash": 'password_hash = "pbkdf2_sha256$600000$' + _random(22) + "$" + _random(43),
    "token assignment": 'token = "' + _random(32) + '"',
    "client secret": 'client_secret: "' + _random(28, string.ascii_letters + "-_") + '"',
    "quack token": 'QUACK_TOKEN = "' + _random(40) + '"',
    "api key in JSON": '{"api_key": "' + _random(30) + '"}',
}

# Lines that must not be flagged: placeholders and low-entropy or non-secret text.
HARMLESS = {
    "README placeholder": "sasl." + "password=<API secret>",
    "empty SASL password": "sasl." + "password=",
    "env expansion": "sasl." + "password=${KAFKA_PASSWORD}",
    "example hash": 'password_hash = "pbkdf2_sha256$600000$REPLACE/WITH/A/REAL/SALT==$REPLACE/X="',
    "cookie placeholder": 'cookie_secret = "<a long random string: secrets.token_urlsafe(32)>"',
    "low entropy token": 'token = "aaaaaaaaaaaaaaaaaaaaaaaa"',
    "words": 'password_help = "Asked for twice, hidden"',
    "passphrase-like test value": 'cookie_secret = "a-long-random-cookie-secret-for-tests"',
    "invalid test hash": 'password_hash = "pbkdf2_sha256$1$a$b"',
    "token path": "token_path = db.with_name(db.name + '.token')",
    "secret name only": "TOKEN_ENV = 'TIRETRACK_QUACK_TOKEN'",
    "bearer word": "the Bearer of bad news",
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_scanner_catches_planted_secrets(name: str, tmp_path: Path) -> None:
    planted = tmp_path / "planted.txt"
    planted.write_text(f"# some file\nvalue = 1\n{PLANTED[name]}\n", encoding="utf-8")
    findings = scan_file(tmp_path, "planted.txt")
    assert findings, f"{name} was not caught"
    assert all(f.line == 3 for f in findings)


@pytest.mark.parametrize("name", sorted(HARMLESS))
def test_scanner_allows_placeholders_and_plain_text(name: str) -> None:
    assert scan_text("harmless.txt", HARMLESS[name]) == []


def test_scanner_reads_the_files_git_would_commit(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("secrets.toml\n", encoding="utf-8")
    (tmp_path / "secrets.toml").write_text(PLANTED["token assignment"] + "\n", encoding="utf-8")
    (tmp_path / "config.py").write_text(PLANTED["SASL password"] + "\n", encoding="utf-8")
    (tmp_path / "image.bin").write_bytes(b"\x00\x01" + PLANTED["GitHub token"].encode())
    files = repository_files(tmp_path)
    assert files == [".gitignore", "config.py", "image.bin"], "ignored files are not scanned"
    findings = [f for path in files for f in scan_file(tmp_path, path)]
    assert [(f.path, f.kind) for f in findings] == [("config.py", "SASL password")]
