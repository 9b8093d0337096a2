"""Dashboard access: PBKDF2 users in secrets.toml, the role of an OIDC e-mail, and under AppTest
the login page, each role's pages (and no other), failed logins, logout, and fail-closed errors."""

from __future__ import annotations

import base64
import hashlib
import stat
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from dashboard import users
from dashboard.auth import PAGES, SESSION_USER, PageSpec
from tests.browser.dashboard_db import DashboardDb, build_dashboard_db

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "app.py"
EXAMPLE = REPO / ".streamlit" / "secrets.toml.example"
FAST = 1_000  # PBKDF2 iterations for test users: the count travels with each hash
ACCOUNTS = {"pat": "planner", "mo": "manager", "ana": "analyst", "root": "admin"}
PASSWORDS = {name: f"{name}-correct-horse" for name in ACCOUNTS}
# The issue's role matrix, by page title; pages not built yet are simply not in PAGES.
MATRIX = {
    "Live map": {"planner", "manager", "analyst", "admin"},
    "Delays & exceptions": {"planner", "analyst", "admin"},
    "Alerts": {"planner", "analyst", "admin"},
    "Inventory flows": {"planner", "manager", "analyst", "admin"},
    "KPIs": {"manager", "analyst", "admin"},
    "Pipeline health": {"planner", "analyst", "admin"},
    "Export": {"analyst", "admin"},
}


def local_secrets(**auth: Any) -> dict[str, Any]:
    table = {
        name: {"role": role, "password_hash": users.hash_password(PASSWORDS[name], iterations=FAST)}
        for name, role in ACCOUNTS.items()
    }
    return {"auth": {"users": table, **auth}}


OIDC = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-long-random-cookie-secret-for-tests",
    "client_id": "tiretrack",
    "client_secret": "s3cret",
    "server_metadata_url": "https://id.example.com/.well-known/openid-configuration",
}


# --- passwords ---


def test_hash_has_the_documented_format_and_verifies() -> None:
    encoded = users.hash_password("correct horse", iterations=FAST)
    algorithm, iterations, salt, digest = encoded.split("$")
    assert (algorithm, iterations) == ("pbkdf2_sha256", str(FAST))
    expected = hashlib.pbkdf2_hmac("sha256", b"correct horse", base64.b64decode(salt), FAST)
    assert base64.b64decode(digest) == expected
    assert len(base64.b64decode(salt)) == users.SALT_BYTES
    assert users.verify_password("correct horse", encoded)
    assert not users.verify_password("correct horsf", encoded)
    assert not users.verify_password("", encoded)


def test_every_hash_gets_its_own_salt_and_the_default_count() -> None:
    first, second = users.hash_password("same"), users.hash_password("same")
    assert first != second
    assert first.split("$")[1] == str(users.ITERATIONS) >= "600000"
    assert users.verify_password("same", first) and users.verify_password("same", second)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain-text-password",
        "pbkdf2_sha256$1000$c2FsdA==",
        "pbkdf2_sha1$1000$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$many$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$0$c2FsdA==$aGFzaA==",
        "pbkdf2_sha256$1000$not base64!$aGFzaA==",
        "pbkdf2_sha256$1000$c2FsdA==$",
    ],
)
def test_a_malformed_hash_never_matches(encoded: str) -> None:
    assert not users.verify_password("anything", encoded)


# --- the [auth] section ---


def test_nothing_configured_is_the_open_demo() -> None:
    assert not users.parse_auth(None).configured
    assert not users.parse_auth({}).configured
    assert not users.parse_auth({"roles": {"a@b.com": "admin"}}).configured


def test_users_and_roles_are_parsed() -> None:
    config = users.parse_auth(local_secrets()["auth"])
    assert config.configured
    assert {n: u.role for n, u in config.users.items()} == ACCOUNTS
    assert config.oidc_providers == ()


@pytest.mark.parametrize(
    "entry,fragment",
    [
        ({"Bad Name": {"role": "admin", "password_hash": "pbkdf2_sha256$1$a$b"}}, "bad user name"),
        ({"x": {"role": "boss", "password_hash": "pbkdf2_sha256$1$a$b"}}, "unknown role"),
        ({"x": {"role": "admin"}}, "password_hash"),
        ({"x": {"role": "admin", "password_hash": "hunter2"}}, "password_hash"),
        ({"x": "admin"}, "must be a table"),
    ],
)
def test_a_malformed_user_is_an_error(entry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as error:
        users.parse_auth({"users": entry})
    assert "\n" not in str(error.value)


def test_oidc_providers_are_detected_and_checked() -> None:
    assert users.parse_auth(OIDC).oidc_providers == ("default",)
    named = {
        "redirect_uri": OIDC["redirect_uri"],
        "cookie_secret": OIDC["cookie_secret"],
        "microsoft": {k: OIDC[k] for k in users.PROVIDER_KEYS},
        "users": {},
        "roles": {"ana@example.com": "analyst"},
    }
    config = users.parse_auth(named)
    assert config.oidc_providers == ("microsoft",)
    assert config.email_roles == {"ana@example.com": "analyst"}
    with pytest.raises(ValueError, match="cookie_secret"):
        users.parse_auth({k: v for k, v in OIDC.items() if k != "cookie_secret"})
    with pytest.raises(ValueError, match="client_secret"):
        users.parse_auth({k: v for k, v in OIDC.items() if k != "client_secret"})


def test_role_of_an_oidc_email() -> None:
    roles = users.parse_email_roles({"Ana@Example.com": "analyst", "mo@example.com": "manager"})
    assert users.role_for_email(roles, "ana@example.com") == "analyst"
    assert users.role_for_email(roles, "  ANA@example.COM ", True) == "analyst"
    assert users.role_for_email(roles, "mo@example.com", None) == "manager"
    assert users.role_for_email(roles, "mo@example.com", False) is None, "unverified address"
    assert users.role_for_email(roles, "eve@example.com") is None
    assert users.role_for_email(roles, None) is None
    assert users.role_for_email(roles, "") is None
    with pytest.raises(ValueError, match="unknown role"):
        users.parse_email_roles({"a@b.com": "root"})
    with pytest.raises(ValueError, match="name@domain"):
        users.parse_email_roles({"not-an-address": "admin"})


def test_authenticate() -> None:
    config = users.parse_auth(local_secrets()["auth"])
    assert users.authenticate(config, "pat", PASSWORDS["pat"]) == config.users["pat"]
    assert users.authenticate(config, " Pat ", PASSWORDS["pat"]) == config.users["pat"]
    assert users.authenticate(config, "pat", PASSWORDS["mo"]) is None
    assert users.authenticate(config, "nobody", PASSWORDS["pat"]) is None


def test_the_example_secrets_file_is_valid() -> None:
    config = users.parse_auth(tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["auth"])
    assert set(config.users) == {"pat", "ana"}
    assert config.oidc_providers == ()
    for user in config.users.values():  # placeholders: nobody can sign in with them
        assert not users.verify_password("", user.password_hash)


# --- add_user ---


@pytest.fixture
def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """add_user hashes with users.ITERATIONS: make it cheap where the count does not matter."""
    monkeypatch.setattr(users, "ITERATIONS", FAST)


EXISTING = """# Tiretrack secrets
title = "keep me"  # a comment

[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "cookie"

[auth.users.pat]
role = "planner"
password_hash = "pbkdf2_sha256$1000$c2FsdA==$aGFzaA=="

[auth.roles]
"ana@example.com" = "analyst"

[other]
list = [1, 2, 3]
"""


def test_add_user_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "secrets.toml"
    users.add_user(path, "ana", "analyst", "long enough")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = users.parse_auth(tomllib.loads(path.read_text(encoding="utf-8"))["auth"])
    assert config.users["ana"].role == "analyst"
    assert users.verify_password("long enough", config.users["ana"].password_hash)
    assert config.users["ana"].password_hash.split("$")[1] == str(users.ITERATIONS)


def test_add_user_keeps_everything_else(tmp_path: Path, fast_hashes: None) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(EXISTING, encoding="utf-8")
    users.add_user(path, "mo", "manager", "managers-password")
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    before = tomllib.loads(EXISTING)
    assert data["title"] == "keep me" and data["other"] == before["other"]
    assert data["auth"]["roles"] == before["auth"]["roles"]
    assert data["auth"]["cookie_secret"] == "cookie"
    assert data["auth"]["users"]["pat"] == before["auth"]["users"]["pat"]
    assert data["auth"]["users"]["mo"]["role"] == "manager"
    assert "# Tiretrack secrets" in text and "# a comment" in text, "comments are kept"
    # The users stay where they were, before [auth.roles].
    assert text.index("[auth.users.mo]") < text.index("[auth.roles]")
    users.add_user(path, "pat", "admin", "a new password")  # replaces, does not duplicate
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert list(data["auth"]["users"]) == ["pat", "mo"]
    assert data["auth"]["users"]["pat"]["role"] == "admin"
    assert users.verify_password("a new password", data["auth"]["users"]["pat"]["password_hash"])
    assert path.read_text(encoding="utf-8").count("[auth.users.pat]") == 1


@pytest.mark.parametrize(
    "name,role,password,fragment",
    [
        ("ana", "boss", "long enough", "unknown role"),
        ("ana", "analyst", "", "at least 8"),
        ("ana", "analyst", "short", "at least 8"),
        ("", "analyst", "long enough", "bad user name"),
        ("Ana", "analyst", "long enough", "bad user name"),
        ("a.b", "analyst", "long enough", "bad user name"),
        ("ana]\n[x", "analyst", "long enough", "bad user name"),
        ("x" * 33, "analyst", "long enough", "bad user name"),
    ],
)
def test_add_user_refuses_bad_input(
    tmp_path: Path, fast_hashes: None, name: str, role: str, password: str, fragment: str
) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(EXISTING, encoding="utf-8")
    with pytest.raises(ValueError, match=fragment) as error:
        users.add_user(path, name, role, password)
    assert "\n" not in str(error.value)
    assert path.read_text(encoding="utf-8") == EXISTING, "the file is left alone"


INLINE = '[auth]\nusers = { pat = { role = "planner", password_hash = "pbkdf2_sha256$1$a$b" } }\n'
BAD_ROLE = '[auth.users.pat]\nrole = "nobody"\npassword_hash = "pbkdf2_sha256$1$a$b"\n'


@pytest.mark.parametrize(
    "text,fragment",
    [("[auth\nbroken", "not valid TOML"), (INLINE, "inline"), (BAD_ROLE, "unknown role")],
)
def test_add_user_refuses_a_file_it_cannot_rewrite_safely(
    tmp_path: Path, fast_hashes: None, text: str, fragment: str
) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=fragment):
        users.add_user(path, "ana", "analyst", "long enough")
    assert path.read_text(encoding="utf-8") == text


def test_tiretrack_user_add_asks_for_the_password_twice(tmp_path: Path, fast_hashes: None) -> None:
    from click.testing import CliRunner

    from ingest.cli import cli

    path = tmp_path / "secrets.toml"
    run = CliRunner().invoke(
        cli, ["user", "add", "ana", "--role", "analyst", "--secrets", str(path)],
        input="long enough\nlong enough\n",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "ana (analyst) saved" in run.output
    run = CliRunner().invoke(
        cli, ["user", "add", "bo", "--role", "planner", "--secrets", str(path)],
        input="long enough\ndifferent!\nlong enough\nlong enough\n",
    )  # fmt: skip
    assert "do not match" in run.output  # asked again, then saved
    run = CliRunner().invoke(
        cli, ["user", "add", "Bad Name", "--role", "planner", "--secrets", str(path)],
        input="long enough\nlong enough\n",
    )  # fmt: skip
    assert run.exit_code == 2 and "Invalid value" in run.output
    assert set(tomllib.loads(path.read_text(encoding="utf-8"))["auth"]["users"]) == {"ana", "bo"}


# --- the app under AppTest ---


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> DashboardDb:
    return build_dashboard_db(
        tmp_path_factory.mktemp("auth") / "small.duckdb", minutes=3, rate=10.0
    )


@pytest.fixture
def app(small_db: DashboardDb, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppTest]]:
    def make(secrets: dict[str, Any], user: dict[str, Any] | None = None) -> AppTest:
        monkeypatch.setenv("TIRETRACK_DB", str(small_db.path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets = secrets
        if user is not None:
            at.user = user
        return at.run()

    yield make


def page_specs() -> list[PageSpec]:
    return list(PAGES)


def reachable(at: AppTest, path: str) -> bool:
    try:
        at.switch_page(path)
    except ValueError:
        return False
    return True


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    return at.button(key="login_submit").click().run()


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_page_roles_follow_the_issues_matrix() -> None:
    specs = page_specs()
    assert {"Live map", "Delays & exceptions", "Pipeline health", "Export"} <= {
        s.title for s in specs
    }
    for spec in specs:
        assert set(spec.roles) == MATRIX[spec.title], spec.title


def test_open_demo_without_users_shows_every_page(app) -> None:
    at = app({"unrelated": {"key": "value"}})  # secrets present, but no [auth]
    assert_clean(at)
    assert titles(at) == ["Live map"]
    assert any("Open demo" in c.value for c in at.sidebar.caption)
    for spec in page_specs():
        assert reachable(at, spec.path), spec.path


def test_nobody_signed_in_sees_only_the_login_form(app) -> None:
    at = app(local_secrets())
    assert_clean(at)
    assert titles(at) == ["Tiretrack"]
    assert at.text_input(key="login_name") and at.text_input(key="login_password")
    for spec in page_specs():
        assert not reachable(at, spec.path), f"{spec.path} is reachable before login"
    assert not at.sidebar.multiselect, "no filters before login"
    assert not any("Database" in c.value for c in at.sidebar.caption), "no paths before login"
    assert not at.get("deck_gl_json_chart") and not at.metric, "no data before login"


@pytest.mark.parametrize(
    "name,password", [("pat", "wrong-password"), ("nobody", PASSWORDS["pat"]), ("pat", "")]
)
def test_failed_login_gets_a_plain_message(app, name: str, password: str) -> None:
    at = log_in(app(local_secrets()), name, password)
    assert_clean(at)
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert titles(at) == ["Tiretrack"]
    assert not reachable(at, "app_pages/live_map.py")


@pytest.mark.parametrize("name", list(ACCOUNTS))
def test_each_role_sees_exactly_its_pages(app, name: str) -> None:
    role = ACCOUNTS[name]
    at = log_in(app(local_secrets()), name, PASSWORDS[name])
    assert_clean(at)
    assert not at.error
    assert titles(at) == ["Live map"], "every role starts on the live map"
    assert any(f"Signed in as **{name}** · {role}" in c.value for c in at.sidebar.caption)
    allowed = [s for s in page_specs() if role in s.roles]
    for spec in page_specs():
        assert reachable(at, spec.path) == (spec in allowed), f"{role}: {spec.title}"
    last = allowed[-1]
    at.switch_page(last.path).run()
    assert_clean(at)
    assert titles(at) == [last.title]


def test_logout_returns_to_the_login_form(app) -> None:
    at = log_in(app(local_secrets()), "ana", PASSWORDS["ana"])
    at.switch_page("app_pages/export.py").run()
    assert titles(at) == ["Export"]
    at.sidebar.button(key="logout").run()  # not clicked yet: nothing happens
    at.sidebar.button(key="logout").click().run()
    assert_clean(at)
    assert titles(at) == ["Tiretrack"]
    assert not reachable(at, "app_pages/export.py")
    assert SESSION_USER not in at.session_state, "signed out"


def test_a_user_removed_from_the_secrets_is_signed_out(app) -> None:
    at = log_in(app(local_secrets()), "pat", PASSWORDS["pat"])
    assert titles(at) == ["Live map"]
    secrets = local_secrets()
    del secrets["auth"]["users"]["pat"]
    at.secrets = secrets
    at.run()
    assert titles(at) == ["Tiretrack"]


def test_invalid_access_settings_keep_the_dashboard_closed(app) -> None:
    at = app({"auth": {"users": {"pat": {"role": "boss", "password_hash": "pbkdf2_sha256$1$a$b"}}}})
    assert_clean(at)
    assert len(at.error) == 1 and "closed" in at.error[0].value
    assert "unknown role" in at.error[0].value
    assert not titles(at)


def test_an_unreadable_secrets_file_keeps_the_dashboard_closed(
    small_db: DashboardDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "secrets.toml"
    broken.write_text('[auth.users.pat]\nrole = "planner\n', encoding="utf-8")
    monkeypatch.setenv("TIRETRACK_DB", str(small_db.path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    with patch_config_options({"secrets.files": [str(broken)]}):
        # st.get_option is bound at import: point it at the patched config too.
        monkeypatch.setattr(st, "get_option", streamlit_config.get_option)
        at.run()
    assert_clean(at)
    assert len(at.error) == 1 and "closed" in at.error[0].value
    assert "valid TOML" in at.error[0].value, "not the open demo"
    assert not titles(at)


def test_oidc_user_gets_the_role_of_the_email(app) -> None:
    secrets = {"auth": {**OIDC, "roles": {"Mo@Example.com": "manager"}}}
    at = app(secrets, user={"is_logged_in": True, "email": "mo@example.com", "name": "Mo"})
    assert_clean(at)
    assert titles(at) == ["Live map"]
    for spec in page_specs():
        assert reachable(at, spec.path) == ("manager" in spec.roles), spec.title
    # (the name is shown with markdown escaped: mo@example\.com)
    assert any("mo@example" in c.value and "manager" in c.value for c in at.sidebar.caption)


def test_oidc_user_without_a_role_has_no_access(app) -> None:
    secrets = {"auth": {**OIDC, "roles": {"mo@example.com": "manager"}}}
    at = app(secrets, user={"is_logged_in": True, "email": "eve@example.com"})
    assert_clean(at)
    assert any("No access" in w.value for w in at.warning)
    for spec in page_specs():
        assert not reachable(at, spec.path)
    unverified = app(
        secrets, user={"is_logged_in": True, "email": "mo@example.com", "email_verified": False}
    )
    assert any("No access" in w.value for w in unverified.warning)


def test_oidc_login_is_offered_when_configured(app) -> None:
    at = app({"auth": dict(OIDC)}, user={"is_logged_in": False})
    assert_clean(at)
    assert [b.label for b in at.button] == ["Log in with single sign-on"]
    assert not at.text_input, "no local users: no password form"
    both = app(local_secrets(**OIDC), user={"is_logged_in": False})
    assert both.text_input(key="login_name")
    assert "Log in with single sign-on" in [b.label for b in both.button]
