"""The console's request guards: security headers on every response, the body size limit, who
is signed in, CSRF on every state-changing request, and the server-side role check.

**Headers** (``add_security_headers``, on aiohttp's ``on_response_prepare`` so that error pages,
redirects and static files get them too): ``CONTENT_SECURITY_POLICY`` (only this origin's
scripts, styles and connections, no inline script or style, no framing, no ``<base>``, forms
post only here), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: same-origin`` (``no-referrer`` would make browsers send ``Origin: null``
on the console's own form posts, which the same-origin check then refuses),
``Permissions-Policy`` denying camera, microphone and geolocation,
``Cross-Origin-Opener-Policy``/``-Resource-Policy: same-origin`` and
``Cache-Control: no-store`` on everything (the pages show biometric crops: nothing of the
console stays in a browser's or proxy's cache).

**Body size** (``body_limit_middleware``): a request announcing more than its route's limit
(``ConsoleConfig.max_body_bytes``, 64 KiB, unless its ``PageRoute`` says otherwise) is refused
with 413 before anything is read; one that does not announce its size is read through aiohttp's
``client_max_size`` set to the same limit (413 there too).

**Sessions and CSRF** (``session_middleware``): every route is for signed-in browsers unless
the app declares it public (sign-in and the static files). Without a live session a page
request (GET/HEAD asking for HTML) is sent to ``/signin`` (303); anything else gets 401. A
state-changing request (POST, PUT, PATCH, DELETE) is refused with 403 when it comes from
another origin (``Origin`` or ``Sec-Fetch-Site`` says so; this holds for the public sign-in
too), and, when signed in, unless it presents the session's CSRF token in the
``X-CSRF-Token`` header (scripts) or the ``csrf_token`` form field (forms). The
``lfr_session`` cookie itself is ``HttpOnly`` and ``SameSite=Strict``: a page of another site
can neither read it nor make the browser send it. Every ``account_recheck_s`` the session's
account is looked up again: disabled, gone or with another role, its sessions end.

**Roles** (``require_role``): checked on the server for every route that needs one
(``PageRoute.role`` does it for the routes it adds); a hidden button is never the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from console.sessions import Session, SessionStore, csrf_matches
from console.users import Role, UserAccount
from guards.log_text import printable

log = logging.getLogger("lfr.console")

SESSION_COOKIE: Final = "lfr_session"
"""The cookie holding the session token."""
CSRF_HEADER: Final = "X-CSRF-Token"
"""Where scripts send the session's CSRF token."""
CSRF_FIELD: Final = "csrf_token"
"""Where forms send it."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: no CSRF token needed (handlers must keep it so)."""
ACCOUNT_LOOKUP_TIMEOUT_S: Final = 10.0
"""A re-check of a session's account that takes longer fails the request with 503."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
"""The console's CSP: no inline script or style anywhere, so every page's script is a file
under /static/."""

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Set on every response the console sends."""

_SESSION_KEY: Final = web.RequestKey("lfr_console_session", Session)  # set by the middleware

AccountLookup = Callable[[str], Awaitable[UserAccount | None]]
"""Looks an account up by name (off the event loop): the session middleware's re-check."""


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: ``SECURITY_HEADERS`` on ``response`` (any response)."""
    del request  # the same headers for every request
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value


def body_limit_middleware(default_max_bytes: int,
                          limits: Mapping[web.AbstractRoute, int]) -> Middleware:
    """Refuse bodies over the route's limit (``limits``, else ``default_max_bytes``) with 413;
    a body of unannounced size is bounded by ``client_max_size`` at that limit."""

    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = limits.get(request.match_info.route, default_max_bytes)
        announced = request.content_length
        if announced is not None and announced > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=announced)
        if request.client_max_size != limit:
            request = request.clone(client_max_size=limit)
        return await handler(request)

    return limit_body


def current_session(request: web.Request) -> Session:
    """The session of a request that passed ``session_middleware`` (a route that is not
    public); ``HTTPUnauthorized`` otherwise."""
    if _SESSION_KEY not in request:
        raise web.HTTPUnauthorized(text="sign in first\n")
    return request[_SESSION_KEY]


def require_role(request: web.Request, role: Role | str) -> Session:
    """The request's session if its account has ``role`` (a supervisor has every role);
    ``HTTPForbidden`` (403) otherwise, ``HTTPUnauthorized`` when not signed in."""
    needed = Role(role)
    session = current_session(request)
    if not session.role.allows(needed):
        raise web.HTTPForbidden(text=f"this needs the {needed.value} role; "
                                     f"{printable(session.account)} is {session.role.value}\n")
    return session


def same_origin(request: web.Request) -> bool:
    """Whether a state-changing request may have come from the console's own pages: no
    ``Origin`` or ``Sec-Fetch-Site`` header says it came from elsewhere."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def presented_csrf_token(request: web.Request) -> str | None:
    """The CSRF token a request presents: the header, or a form's field. A multipart body is
    never parsed here: aiohttp would write its larger file parts to a temporary file (a
    watchlist upload holds embeddings), so a multipart request must send the header."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.content_type == "application/x-www-form-urlencoded":
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def session_middleware(sessions: SessionStore, lookup_account: AccountLookup,
                       is_public: Callable[[web.Request], bool]) -> Middleware:
    """The session and CSRF guard described in the module docstring; ``is_public`` names the
    routes open to anyone (their handlers do their own checks)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not loopback_host(request):
            # DNS rebinding: a web page whose name now resolves to 127.0.0.1 reaches the
            # console with its own name in Host; the console answers loopback names only.
            raise web.HTTPMisdirectedRequest(text="refused: the console answers only to a "
                                                  "loopback address or localhost\n")
        changes_state = request.method not in SAFE_METHODS
        if changes_state and not same_origin(request):
            raise web.HTTPForbidden(text="refused: the request came from another site\n")
        if is_public(request):
            return await handler(request)
        session = sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is not None and sessions.recheck_due(session):
            session = await _recheck(sessions, session, lookup_account)
        if session is None:
            raise _sign_in_first(request)
        if changes_state and not csrf_matches(session, await presented_csrf_token(request)):
            raise web.HTTPForbidden(text="refused: the CSRF token is missing or wrong; reload "
                                         "the page\n")
        request[_SESSION_KEY] = session
        return await handler(request)

    return guard


def loopback_host(request: web.Request) -> bool:
    """Whether the request's ``Host`` names this machine (a loopback address or localhost)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def still_signed_in(request: web.Request, sessions: SessionStore,
                          lookup_account: AccountLookup) -> bool:
    """For a long-lived response (a live view): whether the browser that opened it is still
    signed in (session not ended or expired, account still enabled with the same role),
    without counting the check as use of the session."""
    session = sessions.peek(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return False
    if sessions.recheck_due(session):
        return await _recheck(sessions, session, lookup_account) is not None
    return True


async def _recheck(sessions: SessionStore, session: Session,
                   lookup_account: AccountLookup) -> Session | None:
    """``session`` if its account is still enabled with the same role; else None, and every
    session of the account ended."""
    try:
        account = await asyncio.wait_for(lookup_account(session.account),
                                          ACCOUNT_LOOKUP_TIMEOUT_S)
    except TimeoutError:
        raise web.HTTPServiceUnavailable(text="the accounts' file did not answer; try again\n",
                                         headers={"Retry-After": "5"}) from None
    if account is None or account.disabled or account.role is not session.role:
        ended = sessions.end_account(session.account)
        log.info("console: account %s is disabled, gone or changed role: %d session(s) ended",
                 printable(session.account), ended)
        return None
    sessions.rechecked(session)
    return session


def _sign_in_first(request: web.Request) -> web.HTTPException:
    if request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", ""):
        return web.HTTPSeeOther("/signin")
    return web.HTTPUnauthorized(text="sign in first\n")
