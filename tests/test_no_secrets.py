"""No credential is ever committed: every git-tracked text file is scanned for secret patterns."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    # The password may hold '/' and ':' (a parser reads up to the last '@' before the host).
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:(?!\$\{|\*+@|<)[^\s@'\"]+@[^\s/'\"]+"),
    "password in a URL's query": re.compile(
        r"(?i)(?:[?&;]|%3B|%26)[a-z_]*(?:password|passwd|pwd)\s*(?:=|%3D)(?!\$\{|\*+|<|%2A)[^&;\s'\"]{3,}"
    ),
    # A token, key or signature in a source URL (a pre-signed S3 or Azure URL, an API download link).
    "secret in a URL's query": re.compile(
        r"(?i)[?&;][a-z_.-]*(?:token|signature|secret|api_?key|access_?key|credential|(?<![a-z])sig|(?<![a-z])key)"
        r"\s*=(?!\$\{|\*+|<|%2A)[^&;\s'\"]{8,}"
    ),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"),
    "secret assigned in config": re.compile(
        r"(?i)\b(?:password|passwd|secret_access_key|api_key|token)\s*[=:]\s*['\"](?!\$\{)[^'\"\s]{8,}['\"]"
    ),
}


def scan(text: str) -> list[str]:
    return [name for name, pattern in PATTERNS.items() if pattern.search(text)]


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:8192]:  # skip binaries (Parquet, PNG)
            files.append(path)
    return files


def test_no_tracked_file_holds_a_credential():
    found = {}
    for path in tracked_text_files():
        hits = scan(path.read_text(encoding="utf-8", errors="replace"))
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}, f"credential-like text in tracked files: {found}"
    assert len(tracked_text_files()) > 50  # the scan really saw the repository


# The planted examples are assembled at run time so that this file itself stays clean.
@pytest.mark.parametrize(
    "planted",
    [
        "key = " + "AKIA" + "IOSFODNN7EXAMPLE",
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
        "url: postgresql://admin:" + "hunter2" + "@db.example.com/prod",
        "url: postgresql+psycopg://analyst:hun/" + "ter2@db.example.com/prod",
        "url: postgresql+psycopg://analyst@db.example.com/prod?pass" + "word=hunter2",
        "url: mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BP" + "WD%3Dhunter2",
        "s3 endpoint https://user:" + "s3cr3t" + "@minio.local",
        "source: https://files.example.com/t.csv?tok" + "en=9f8e7d6c5b4a",
        "source: https://bucket.s3.amazonaws.com/t.csv?X-Amz-Algorithm=AWS4&X-Amz-Sign" + "ature=0123456789abcdef",
        "source: https://acct.blob.core.windows.net/c/t.csv?sv=2024&si" + "g=abcdefgh1234",
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "password: '" + "correct-horse-battery" + "'",
    ],
)
def test_the_scanner_catches_planted_secrets(planted):
    assert scan(planted)


@pytest.mark.parametrize(
    "harmless",
    [
        "postgresql://user:${PGPASSWORD}@db.example.com/warehouse",
        "dvc remote modify --local s3 secret_access_key ...",
        "AWS_ACCESS_KEY_ID=testing",
        "https://dvc.org/doc/command-reference/remote/modify",
        "postgresql+psycopg://analyst@db.example.com/prod?sslmode=require",
        "postgresql+psycopg://analyst:***@db.example.com/prod?password=***",
        "https://files.example.com/t.csv?token=***",
        "https://api.example.com/t.csv?key=1&monkey=2",
    ],
)
def test_the_scanner_leaves_placeholders_alone(harmless):
    assert scan(harmless) == []
