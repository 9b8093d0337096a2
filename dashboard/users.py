"""Dashboard users and roles kept in `.streamlit/secrets.toml`: password hashes, parsing, editing.

Pure (no Streamlit): the dashboard's login (`dashboard.auth`) and the command that adds a user
both use it. The format (see `.streamlit/secrets.toml.example`):

    [auth.users.ana]
    role = "analyst"
    password_hash = "pbkdf2_sha256$600000$<salt, base64>$<hash, base64>"

    [auth.roles]                      # OIDC through st.login: verified e-mail -> role
    "ana@example.com" = "analyst"

`password_hash` is PBKDF2-HMAC-SHA256 with a random 16-byte salt per user; the iteration count
travels with the hash, so raising `ITERATIONS` later leaves older hashes valid. Add or replace a
user with `tiretrack user add NAME --role ROLE` (asks for the password twice).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("planner", "manager", "analyst", "admin")
ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256; ~0.2 s here
SALT_BYTES = 16
MIN_PASSWORD_LENGTH = 8
NAME_RULE = (
    "1-32 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"
)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# Keys of [auth] that are ours, or st.login's own sub-tables, never an OIDC provider.
NOT_PROVIDERS = frozenset({"users", "roles", "client_kwargs"})
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")


# --- passwords ---


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(
    password: str, *, iterations: int | None = None, salt: bytes | None = None
) -> str:
    """`pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>` with a fresh random salt; the
    iteration count defaults to ITERATIONS."""
    iterations = ITERATIONS if iterations is None else iterations
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches the stored hash; a malformed hash never matches."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM or not parts[1].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    iterations = int(parts[1])
    if iterations < 1 or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# --- the [auth] section ---


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class AuthSettings:
    """What `[auth]` of secrets.toml configures; nothing configured means the open demo."""

    users: Mapping[str, User] = field(default_factory=dict)
    email_roles: Mapping[str, str] = field(default_factory=dict)  # lower-case e-mail -> role
    oidc_providers: tuple[str, ...] = ()  # st.login provider names; "default" is st.login()

    @property
    def configured(self) -> bool:
        return bool(self.users or self.oidc_providers)


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"bad user name {name!r}: {NAME_RULE}")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def parse_users(table: object) -> dict[str, User]:
    """`[auth.users]` as users; a malformed entry is an error (the dashboard then stays shut)."""
    if not isinstance(table, Mapping):
        raise ValueError("[auth.users] must be a table of [auth.users.<name>] tables")
    users: dict[str, User] = {}
    for name, entry in table.items():
        check_name(name)
        if not isinstance(entry, Mapping):
            raise ValueError(f"[auth.users.{name}] must be a table with role and password_hash")
        role, password_hash = entry.get("role"), entry.get("password_hash")
        if not isinstance(role, str):
            raise ValueError(f"[auth.users.{name}] has no role")
        check_role(role)
        if not isinstance(password_hash, str) or not password_hash.startswith(ALGORITHM + "$"):
            raise ValueError(
                f'[auth.users.{name}] needs password_hash = "{ALGORITHM}$..." '
                "(tiretrack user add NAME --role ROLE writes one)"
            )
        users[name] = User(name, role, password_hash)
    return users


def parse_email_roles(table: object) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise ValueError('[auth.roles] must map e-mail addresses to roles: "a@b.com" = "planner"')
    roles: dict[str, str] = {}
    for email, role in table.items():
        if "@" not in email or not isinstance(role, str):
            raise ValueError(f'[auth.roles]: write "name@domain" = "<role>", not {email!r}')
        check_role(role)
        roles[email.strip().lower()] = role
    return roles


def oidc_providers(auth: Mapping[str, Any]) -> tuple[str, ...]:
    """The st.login providers `[auth]` configures: "default" for settings directly in [auth],
    and each `[auth.<provider>]` table with client_id, client_secret and server_metadata_url."""
    named = tuple(
        key
        for key, value in auth.items()
        if key not in NOT_PROVIDERS
        and isinstance(value, Mapping)
        and any(k in value for k in PROVIDER_KEYS)
    )
    default = ("default",) if any(k in auth for k in PROVIDER_KEYS) else ()
    providers = default + named
    if not providers:
        return ()
    missing = [k for k in ("redirect_uri", "cookie_secret") if not auth.get(k)]
    if missing:
        raise ValueError(f"OIDC login needs {' and '.join(missing)} in [auth]")
    for provider in providers:
        section = auth if provider == "default" else auth[provider]
        absent = [k for k in PROVIDER_KEYS if not section.get(k)]
        if absent:
            where = "[auth]" if provider == "default" else f"[auth.{provider}]"
            raise ValueError(f"{where} is missing {', '.join(absent)} for OIDC login")
        if "_" in provider:
            raise ValueError(f"OIDC provider name {provider!r}: st.login refuses underscores")
    return providers


def parse_auth(auth: object) -> AuthSettings:
    """The `[auth]` section (a mapping, as tomllib or st.secrets gives it) checked as a whole."""
    if auth is None:
        return AuthSettings()
    if not isinstance(auth, Mapping):
        raise ValueError("[auth] must be a table")
    return AuthSettings(
        users=parse_users(auth.get("users", {})),
        email_roles=parse_email_roles(auth.get("roles", {})),
        oidc_providers=oidc_providers(auth),
    )


def authenticate(settings: AuthSettings, name: str, password: str) -> User | None:
    """The user whose name and password match, else None. An unknown name costs as much time
    as a wrong password, so the answer's timing does not tell which user names exist."""
    user = settings.users.get(name.strip().lower())
    if user is None:
        verify_password(password, _decoy_hash())
        return None
    return user if verify_password(password, user.password_hash) else None


def role_for_email(
    email_roles: Mapping[str, str], email: object, verified: object = None
) -> str | None:
    """The role `[auth.roles]` gives an OIDC identity; None (no access) when the e-mail is
    missing, not listed, or marked unverified by the provider."""
    if not isinstance(email, str) or not email.strip() or verified is False:
        return None
    return email_roles.get(email.strip().lower())


# --- editing secrets.toml ---


def _toml_string(value: str) -> str:
    escaped = []
    for char in value:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    raise ValueError(f"{where}: only strings, numbers and booleans can be kept when rewriting")


def users_toml(users: Mapping[str, Mapping[str, object]]) -> str:
    """`[auth.users.<name>]` tables, one per user, keys in their given order."""
    blocks = []
    for name, entry in users.items():
        check_name(name)  # a bare TOML key
        lines = [f"[auth.users.{name}]"]
        lines += [
            f"{key} = {_toml_value(value, f'[auth.users.{name}] {key}')}"
            for key, value in entry.items()
            if re.fullmatch(r"[A-Za-z0-9_-]+", key)
        ]
        if len(lines) != len(entry) + 1:
            raise ValueError(f"[auth.users.{name}] has a key this command cannot rewrite")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


_HEADER = re.compile(r"\s*\[\[?(?P<key>[^\[\]]+)\]\]?\s*(#.*)?")
_KEY_PART = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(?:\.|$)')


def _header_path(line: str) -> tuple[str, ...] | None:
    """The dotted key of a `[table]` or `[[array]]` header line, None for other lines."""
    match = _HEADER.fullmatch(line)
    if match is None:
        return None
    text, parts, position = match.group("key"), [], 0
    while position < len(text):
        part = _KEY_PART.match(text, position)
        if part is None or part.end() == position:
            return None
        parts.append(next(g for g in part.groups() if g is not None))
        position = part.end()
    return tuple(parts)


def _without_user_tables(text: str) -> tuple[list[str], int | None]:
    """The lines outside `[auth.users]` / `[auth.users.*]` tables, and where the first was."""
    kept: list[str] = []
    first: int | None = None
    skipping = False
    for line in text.splitlines():
        path = _header_path(line)
        if path is not None:
            skipping = path[:2] == ("auth", "users")
            if skipping and first is None:
                first = len(kept)
        if not skipping:
            kept.append(line)
    return kept, first


def _without_users(data: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(data)
    auth = result.get("auth")
    if isinstance(auth, Mapping):
        auth = {k: v for k, v in auth.items() if k != "users"}
        if auth:
            result["auth"] = auth
        else:
            del result["auth"]
    return result


def with_user(text: str, name: str, entry: Mapping[str, object]) -> str:
    """secrets.toml text with user `name` added or replaced, everything else kept as written
    (other tables, comments, order); checked by parsing the result."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"not valid TOML ({e}); fix it first") from e
    auth = before.get("auth", {})
    if not isinstance(auth, dict):
        raise ValueError("auth must be a table")
    parse_users(auth.get("users", {}))  # the existing entries must be sound to be rewritten
    users = dict(auth.get("users", {}))
    users[name] = {**users.get(name, {}), **entry}
    lines, first = _without_user_tables(text)
    try:
        rest = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"cannot separate the [auth.users] tables from the rest ({e})") from e
    if "users" in rest.get("auth", {}):
        raise ValueError(
            "users are defined inline; write them as [auth.users.<name>] tables "
            "so that this command can edit them"
        )
    block = users_toml(users).rstrip("\n").splitlines()
    if first is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ([""] if lines else []) + block
    else:
        lines[first:first] = [*block, ""]
    result = "\n".join(lines).rstrip("\n") + "\n"
    after = tomllib.loads(result)
    if _without_users(after) != _without_users(before) or after["auth"]["users"] != users:
        raise ValueError("rewriting would change more than the users; edit the file by hand")
    return result


def _write_private(path: Path, text: str) -> None:
    """Replace the file atomically with one only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(secrets_path: Path, name: str, role: str, password: str) -> None:
    """Add user `name` with `role` to the secrets file (created if missing, mode 0600), or give
    an existing user a new role and password. ValueError (one line) for bad input."""
    check_name(name)
    check_role(role)
    check_password(password)
    try:
        text = secrets_path.read_text(encoding="utf-8") if secrets_path.exists() else ""
    except OSError as e:
        raise ValueError(f"cannot read {secrets_path}: {e.strerror}") from e
    try:
        updated = with_user(text, name, {"role": role, "password_hash": hash_password(password)})
    except ValueError as e:
        raise ValueError(f"{secrets_path}: {e}") from e
    try:
        _write_private(secrets_path, updated)
    except OSError as e:
        raise ValueError(f"cannot write {secrets_path}: {e.strerror}") from e
