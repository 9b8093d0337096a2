"""Who may see which page (PAGES), and who is signed in: local PBKDF2 users or OIDC (st.login).

Everything is configured in `.streamlit/secrets.toml` (format: `dashboard/users.py` and
`.streamlit/secrets.toml.example`):

- **Open demo**: no `[auth.users.*]` and no OIDC provider. Every page is open; the sidebar
  says so.
- **Local users**: `[auth.users.<name>]` tables (role, PBKDF2 `password_hash`). The login page
  checks name and password on the server; a failed attempt waits `FAILED_LOGIN_DELAY_S` and
  gets one plain message that does not say which of the two was wrong. The sign-in lives in the
  server-side session: reloading the page or opening a new tab asks again.
- **OIDC** (`st.login`, needs Authlib: `pip install "streamlit[auth]"`): `redirect_uri` and
  `cookie_secret` in `[auth]`, plus `client_id`, `client_secret` and `server_metadata_url`
  either directly in `[auth]` (the default provider) or in `[auth.<provider>]` tables. The role
  comes from `[auth.roles]`, verified e-mail -> role ("ana@example.com" = "analyst", matched
  without regard to case); a signed-in address that is not listed, or that the provider marks
  unverified, gets only a "no access" message and a logout button.

Both can be configured at once. A malformed `[auth]` (or an unreadable secrets file) keeps the
dashboard shut with a one-line reason, never open. app.py gives `st.navigation` only
`pages_for(role)`, so a page outside the role has no URL at all in that session.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAuthError, StreamlitMissingAuthlibError

from dashboard.formatting import escape_markdown
from dashboard.users import ROLES, AuthSettings, authenticate, parse_auth, role_for_email

log = logging.getLogger(__name__)

ALL_ROLES = frozenset(ROLES)
READERS = frozenset({"analyst", "admin"})  # every page, read-only, plus exports


@dataclass(frozen=True)
class PageSpec:
    """A page of app.py's navigation (path relative to app.py) and the roles that see it."""

    path: str
    title: str
    icon: str
    roles: frozenset[str]
    default: bool = False


PAGES = (
    PageSpec("app_pages/live_map.py", "Live map", "🗺️", ALL_ROLES, default=True),
    PageSpec("app_pages/delays.py", "Delays & exceptions", "⏱️", READERS | {"planner"}),
    PageSpec("app_pages/alerts.py", "Alerts", "🔔", READERS | {"planner"}),
    PageSpec("app_pages/inventory.py", "Inventory flows", "📦", ALL_ROLES),
    PageSpec("app_pages/kpis.py", "KPIs", "📈", READERS | {"manager"}),
    PageSpec("app_pages/pipeline_health.py", "Pipeline health", "🩺", READERS | {"planner"}),
    PageSpec("app_pages/export.py", "Export", "⬇️", READERS),
)


def pages_for(role: str | None) -> list[PageSpec]:
    """The pages a role sees; every page for None (the open demo, nobody to sign in)."""
    return [p for p in PAGES if role is None or role in p.roles]


# Who may acknowledge alerts; analysts see the Alerts page read-only. Nobody can in the open
# demo: an acknowledgement records who made it.
ACK_ROLES = frozenset({"planner", "admin"})


SESSION_USER = "auth_user"  # session-state key: the signed-in local user's name
FAILED_LOGIN_DELAY_S = 1.0  # slows password guessing through the form; also hides timing


@dataclass(frozen=True)
class Identity:
    name: str
    role: str | None  # None: signed in through OIDC, but [auth.roles] gives the address no role
    via: str  # "password" or "oidc"


def settings() -> AuthSettings:
    """`[auth]` of the secrets; ValueError (one line) when it, or a secrets file, is unusable."""
    if not st.secrets.load_if_toml_exists():
        present = [p for p in st.get_option("secrets.files") if Path(p).exists()]
        if present:  # there, but unreadable: fail closed, not open
            raise ValueError(f"{present[0]} cannot be read; is it valid TOML?")
        return AuthSettings()
    return parse_auth(st.secrets.to_dict().get("auth"))


def current_identity(config: AuthSettings) -> Identity | None:
    """The signed-in user of this session, None when nobody is."""
    name = st.session_state.get(SESSION_USER)
    if isinstance(name, str):
        user = config.users.get(name)
        if user is not None:  # looked up on every run: a changed role or removed user applies
            return Identity(user.name, user.role, "password")
        del st.session_state[SESSION_USER]
    if config.oidc_providers:
        info = st.user.to_dict()
        if info.get("is_logged_in"):
            email = info.get("email")
            role = role_for_email(config.email_roles, email, info.get("email_verified"))
            return Identity(str(email or info.get("name") or "unknown user"), role, "oidc")
    return None


def acknowledger(identity: Identity | None) -> str | None:
    """The name an acknowledgement is signed with; None when this identity may not acknowledge.
    Pages call it with `current_identity` of the same run, when the action arrives: what the
    browser showed or sent never decides."""
    if identity is None or identity.role not in ACK_ROLES:
        return None
    return identity.name


def log_out(identity: Identity) -> None:
    st.session_state.clear()  # nothing of this user (filters, prepared exports) outlives them
    if identity.via == "oidc":
        st.logout()  # clears Streamlit's identity cookie and starts a new session
    else:
        st.rerun()


def _password_form(config: AuthSettings) -> None:
    with st.form("login", width=420):
        st.subheader("Log in")
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Log in", type="primary", key="login_submit")
    if not submitted:
        return
    user = authenticate(config, name, password)
    if user is None:
        known = name.strip().lower() in config.users
        log.warning("failed dashboard login (%s)", "wrong password" if known else "unknown user")
        time.sleep(FAILED_LOGIN_DELAY_S)
        st.error("Wrong user name or password.", icon="🔒")
        return
    log.info("dashboard login: %s (%s)", user.name, user.role)
    st.session_state[SESSION_USER] = user.name
    st.rerun()


def _oidc_buttons(config: AuthSettings) -> None:
    for provider in config.oidc_providers:
        label = "single sign-on" if provider == "default" else provider.capitalize()
        if st.button(f"Log in with {label}", key=f"oidc_login_{provider}"):
            try:
                st.login(None if provider == "default" else provider)
            except StreamlitMissingAuthlibError:
                st.error('Single sign-on needs Authlib: pip install "streamlit[auth]".')
            except StreamlitAuthError as e:
                st.error(f"Single sign-on is not configured correctly: {e}")


def login_page() -> None:
    """The only page while nobody is signed in (and for an OIDC user without a role)."""
    config = settings()
    identity = current_identity(config)
    st.title("Tiretrack")
    if identity is not None and identity.role is None:
        st.warning(
            f"**No access.** {escape_markdown(identity.name)} has no role on this dashboard; "
            "ask an administrator to add the address to `[auth.roles]`.",
            icon="🚫",
        )
        if st.button("Log out", key="logout_no_access"):
            log_out(identity)
        return
    st.caption("Real-time tire logistics. Sign in to see the pages of your role.")
    if config.users:
        _password_form(config)
    if config.oidc_providers:
        _oidc_buttons(config)


def sidebar_account(identity: Identity) -> None:
    st.sidebar.caption(
        f"👤 Signed in as **{escape_markdown(identity.name)}** · {identity.role or 'no role'}"
    )
    if st.sidebar.button("Log out", key="logout", width="stretch"):
        log_out(identity)
