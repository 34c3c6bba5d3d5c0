"""Credentials in URLs: refused in params, and masked in every message.

params.yaml is committed and its values are recorded in dvc.lock, so a URL there must carry no
secret. A database URL (found with SQLAlchemy's own parser) may carry a password in any of the
places a driver accepts one: after the user name (`user:secret@`, whatever characters the secret
holds), in a query parameter named like a password, or inside a connection string passed as a
query value (an ODBC string's PWD field). A source URL (http(s)://, s3://) may carry one after
the user name or in a query parameter: a token, an API key, a pre-signed URL's signature.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# Query keys that carry a secret under some driver's spelling (password, passwd, pwd, sslpassword, token, ...).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|api_?key", re.IGNORECASE)
# A secret inside a value: the `PWD=...` of an ODBC connection string, the `password=...` of a DSN.
_SECRET_IN_VALUE = re.compile(r"(?i)\b(?:pwd|password|passwd|secret|token)\s*=\s*[^;&\s]+")


def parse_url(url: str) -> Any:
    """SQLAlchemy's parsed URL; ValueError (naming no part of the URL) when it cannot be parsed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise ValueError("is not a SQLAlchemy database URL (dialect+driver://user@host/database)") from None


def _values(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def credentials_in_url(url: str) -> list[str]:
    """Where `url` carries a secret, in words that never repeat the secret; empty when it carries none."""
    address = parse_url(url)
    found = ["a password after the user name"] if address.password is not None else []
    for key, value in address.query.items():
        if _SECRET_KEY.search(key):
            found.append(f"query parameter '{key}'")
        elif any(_SECRET_IN_VALUE.search(str(item)) for item in _values(value)):
            found.append(f"a password inside query parameter '{key}'")
    return found


# Query keys that carry a secret in a source URL: the words above, and those of signed and keyed
# URLs (`sig` of an Azure SAS, `X-Amz-Signature`/`X-Amz-Credential`, `key`, `access_key`, `auth`).
_SECRET_SOURCE_KEY = re.compile(
    r"pass|pwd|secret|token|credential|signature|api_?key|access_?key|(?:^|[-_.])(?:key|sig|auth|session)(?:$|[-_.])", re.I
)


def credentials_in_source_url(source: str) -> list[str]:
    """Where a data source URL carries a secret, in words that never repeat it; empty for a local path."""
    from urllib.parse import parse_qsl, urlsplit

    if "://" not in source:
        return []
    parts = urlsplit(source)
    found = ["a password after the user name"] if _has_password(parts, source) else []
    found += [f"query parameter '{key}'" for key, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_SOURCE_KEY.search(key)]
    return found


def _has_password(parts: Any, source: str) -> bool:
    if parts.password:
        return True
    try:
        _ = parts.port
    except ValueError:  # `user:pa/ss@host`: the password's '/' ended the host early, leaving 'pa' as its port
        return bool(_PASSWORD_IN_TEXT_URL.match(source))
    return False


def source_credentials_problem(source: str) -> str | None:
    """Why a data source may not be written to params as it is, and where its credentials go; None when it may."""
    found = credentials_in_source_url(source)
    if not found:
        return None
    return (
        f"the URL holds a secret ({', '.join(found)}), and params.yaml is committed: give the URL without it; "
        "put an http(s) user and password in ~/.netrc (or the file named by $NETRC): `machine HOST login USER password ...`, "
        "s3:// keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; a URL that works only with a token or signature in it: "
        "download the file into data/ and give its path"
    )


def redact_url(url: Any) -> str:
    """The URL as it may be shown: password and secret-bearing query values replaced by ***."""
    try:
        address = parse_url(url) if isinstance(url, str) else url
    except ValueError:
        return "<a database URL that cannot be parsed>"
    query = {}
    for key, value in address.query.items():
        items = tuple(
            MASK if _SECRET_KEY.search(key) else _SECRET_IN_VALUE.sub(lambda m: m.group(0).split("=")[0] + "=" + MASK, str(item))
            for item in _values(value)
        )
        query[key] = items if len(items) > 1 else items[0]
    return address.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)


def scrub(message: str, *secrets: str | None) -> str:
    """`message` with every given secret replaced by ***, for messages that quote a driver's error."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, MASK)
    return message


# For free text (error lines, logs): a password in a URL's user part, and secret-bearing parameters.
_PASSWORD_IN_TEXT_URL = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*:)[^\s@'\"]+@")
_SECRET_PARAMETER_IN_TEXT = re.compile(
    r"(?i)((?:[?&;]|%3B|%26)\s*[a-z_.-]*(?:pass|pwd|secret|token|credential|signature|api_?key|access_?key|key|sig|auth|session)[a-z_.-]*"
    r"\s*(?:=|%3D)\s*)(?:(?!%3B|%26)[^&;\s'\"])+"
)


def mask_credentials(text: str) -> str:
    """`text` with URL passwords and secret parameters replaced by *** (applied to every error line)."""
    return _SECRET_PARAMETER_IN_TEXT.sub(rf"\1{MASK}", _PASSWORD_IN_TEXT_URL.sub(rf"\1{MASK}@", text))
