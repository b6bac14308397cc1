"""Who is asking: each browser session owns its fine-tuning jobs, annotations, uploads and fine-tuned models.

The owner of a request is read from Gradio's request context, so handlers need no extra argument:

* with login switched on by the operator (EASYNET_AUTH="user:password,..."; Gradio's `auth`), everyone logged
  in shares one team workspace (TEAM);
* otherwise each browser session is its own owner: a random token kept in the browser's local storage
  (gr.BrowserState, adopted by `adopt` when the page loads, so a reload keeps the session), or Gradio's
  session hash for API clients (one per `gradio_client.Client`);
* without a web request (the CLI, scripts, tests calling handlers directly) the owner is LOCAL, whose folder
  is the workspace root.

Owners are folder names (a SHA-256 digest of the secret, never the secret itself). Shipped checkpoints,
samples and <workspace>/models stay shared and read-only for every session.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from app import state
from easynet.errors import InputError

LOCAL = "local"
TEAM = "team"
BUILD = "build"  # while the page is being built: no session's data may appear in it
AUTH_ENV = "EASYNET_AUTH"
TOKEN_PATTERN = re.compile(r"^[0-9a-f]{32}$")
OWNER_PATTERN = re.compile(r"^[a-z0-9_-]{1,40}$")  # owners are folder names
MAX_ALIASES = 10_000  # browser tokens remembered per page session (oldest forgotten first)
BROWSER_STORAGE_KEY = "easynet-session"

_override: ContextVar[str | None] = ContextVar("easynet_owner", default=None)
_aliases: OrderedDict[str, str] = OrderedDict()  # Gradio session hash -> owner adopted from the browser token
_lock = threading.Lock()


def auth_pairs() -> list[tuple[str, str]] | None:
    """(user, password) pairs from EASYNET_AUTH ("user:password,user2:password2"), None when login is off."""
    value = os.environ.get(AUTH_ENV, "").strip()
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"{AUTH_ENV} must be 'user:password' pairs separated by commas")
        pairs.append((user, password))
    return pairs


def _digest(secret: str) -> str:
    return "s" + hashlib.sha256(secret.encode()).hexdigest()[:24]


def _request() -> Any:
    from gradio.context import LocalContext

    return LocalContext.request.get(None)


def owner() -> str:
    """The owner of the current request (see the module docstring)."""
    forced = _override.get()
    if forced:
        return forced
    request = _request()
    if request is None:
        from gradio.context import Context

        return BUILD if Context.root_block is not None else LOCAL
    if getattr(request, "username", None):
        return TEAM
    session = getattr(request, "session_hash", None) or ""
    if not session:
        return _digest(secrets.token_hex(16))  # a call without a session hash owns nothing that lasts
    with _lock:
        adopted = _aliases.get(session)
    return adopted or _digest(session)


@contextmanager
def as_owner(name: str) -> Iterator[None]:
    """Run a block as `name` (tests and scripts; the web app derives the owner from the request)."""
    if not OWNER_PATTERN.match(name):
        raise ValueError(f"not an owner name: {name!r}")
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def client() -> str | None:
    """The address of the current request's client (None without a web request): quotas count per address too, so
    a client that mints new sessions gets no more fine-tuning slots."""
    request = _request()
    host = getattr(getattr(request, "client", None), "host", None)
    return str(host) if host else None


SECRET_KEY = "browser_session_secret"


def browser_secret() -> str:
    """The key that encrypts the session token kept in browsers (gr.BrowserState): created once and kept in the
    workspace database, so a restarted server recognises returning browsers."""
    return state.store().setting_once(SECRET_KEY, lambda: secrets.token_hex(32))


NEW_SESSIONS_PER_HOUR_ENV = "EASYNET_NEW_SESSIONS_PER_HOUR"
NEW_SESSIONS_PER_HOUR = 60  # new browser sessions one client address may open per hour


def adopt(token: str | None) -> str:
    """Page load (and the /session call of an API client that keeps its own token): bind this Gradio session to
    the browser's stored token (a new one on a first visit) and return the token for gr.BrowserState to keep.

    Sessions are recorded in the workspace database with their client address; one address may open at most
    EASYNET_NEW_SESSIONS_PER_HOUR new ones an hour (a returning token is never refused), so flooding this endpoint
    neither fills the database nor pushes real browsers out of the alias table."""
    from easynet.settings import env_int

    request = _request()
    if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
        token = secrets.token_hex(16)
    owner, now, address = _digest(token), time.time(), client()
    limit = env_int(NEW_SESSIONS_PER_HOUR_ENV, NEW_SESSIONS_PER_HOUR)
    with state.store().transaction() as db:
        known = db.execute("SELECT 1 FROM sessions WHERE owner = ?", (owner,)).fetchone()
        if known:
            db.execute("UPDATE sessions SET last_seen = ? WHERE owner = ?", (now, owner))
        else:
            recent = db.execute(
                "SELECT COUNT(*) FROM sessions WHERE client IS ? AND created > ?", (address, now - 3600)
            ).fetchone()[0]
            if address is not None and recent >= limit:
                raise InputError(
                    f"too many new sessions from your address ({recent} in the last hour, the limit); reuse "
                    "your session token or try again later"
                )
            db.execute(
                "INSERT INTO sessions (owner, client, created, last_seen) VALUES (?, ?, ?, ?)",
                (owner, address, now, now),
            )
    session = getattr(request, "session_hash", None)
    if session and not getattr(request, "username", None):
        with _lock:
            _aliases[session] = owner
            _aliases.move_to_end(session)
            while len(_aliases) > MAX_ALIASES:
                _aliases.popitem(last=False)
    return token
