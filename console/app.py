"""``build_console_app``: the console's aiohttp application: sign-in, sign-out, the shell page,
the static files, and the pages other modules add.

Routes of its own: ``GET /signin`` (the form), ``POST /signin``, ``POST /signout``, ``GET /``
(the shell: navigation and who is signed in) and ``/static/`` (``console/static``: CSS and
JavaScript files, never a directory listing nor a link out of the folder). Every other route is
for signed-in browsers only, whoever added it (``console.security``: sessions, CSRF, headers,
body size). The van node serves the app on loopback (``van.toml``'s ``console.host`` must be
127.0.0.1 or ::1), where TLS adds nothing: no one else can see the connection. The
``lfr_session`` cookie is ``Secure`` whenever the request came over TLS.

**Adding a page.** Give ``build_console_app`` a ``PageRoute`` per route::

    async def units_page(request: web.Request) -> web.StreamResponse:
        return shell_page(request, "Units", f"<p>{html.escape(text)}</p>",
                          scripts=("/static/units.js",))

    app = build_console_app(users, config, pages=[
        PageRoute("GET", "/units", units_page),
        PageRoute("POST", "/watchlist/purge", purge, role=Role.SUPERVISOR),
    ])

``PageRoute.role`` is checked on the server before the handler runs (403 otherwise; a
supervisor has every role); ``max_body_bytes`` raises the 64 KiB body limit for that route
(photo uploads). A handler may call ``current_session(request)`` for the account and
``require_role(request, ...)`` for finer checks. State-changing methods are refused without the
session's CSRF token, so a page's script sends it: ``lfrConsole.send(method, url, body)`` in
``/static/console.js`` does (it reads the token from the page's
``<meta name="lfr-csrf-token">``), and a form includes ``csrf_field(request)``. Pages use
``shell_page`` so every page has the same header, navigation, skip link and sign-out button;
what they pass as HTML they built themselves with every untrusted text through ``html.escape``.
No page may carry inline script or ``style=`` attributes (the CSP refuses both): scripts and
styles are files under ``console/static``. Routes added straight to the returned app with
``app.router`` are guarded by the same middlewares (signed in, CSRF, headers, body size) but
must call ``require_role`` themselves. ``NAVIGATION`` lists the sections the shell links to.

**Sign-in** (``POST /signin``): from another site (``Origin``/``Sec-Fetch-Site``) or without
the form's own token (a random value in the form and in the ``lfr_signin`` cookie, so no other
site can sign a browser in to an account of its choosing) 403; a name or address locked out by
``SignInThrottle`` 429 with ``Retry-After``, without checking the password; then the password
is checked on a worker thread (at most ``max_concurrent_sign_ins`` at once, each scrypt takes
16 MiB; a wait beyond ``sign_in_wait_s`` is 503). A failure is 401 with the same text whether
the name exists, is disabled or the password is wrong; a success makes a new session (ending
the one the browser came with) and sends the browser to ``/``.

**The trail.** Given an ``audit`` recorder (the van's ``AuditSink``), sign-in, sign-out, failed
and throttled sign-ins are recorded in the van's audit trail (``console_signed_in``,
``console_signed_out``, ``console_sign_in_failed``, ``console_sign_in_throttled``:
docs/AUDIT.md) through ``console.account_trail.SignInTrail``. A failed or throttled sign-in
records the name as typed (printable) only when it names an account, since people type
passwords into the name field; never the password. A lockout is recorded once, not each
attempt it refuses (bounded). Failures of names that are no account, which anyone at the form
can make without end, are recorded at most once per address per window with their exact
count, and what is still counted when the console stops (``on_cleanup``). Sessions that
expire are not recorded.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import html
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from console.account_trail import SignInTrail
from console.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    AccountLookup,
    add_security_headers,
    body_limit_middleware,
    current_session,
    require_role,
    session_middleware,
    still_signed_in,
)
from console.sessions import (
    MAX_TOKEN_CHARS,
    TOKEN_BYTES,
    Session,
    SessionConfig,
    SessionStore,
    SignInThrottle,
    ThrottleConfig,
    retry_after_header,
)
from console.sources import AuditRecorder
from console.users import (
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    Role,
    UserAccount,
    UserStore,
)
from guards.config_checks import ConfigError, require_at_least, require_positive
from guards.log_text import printable
from runtime.log_budget import LogBudget

log = logging.getLogger("lfr.console")

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
"""The files served under ``/static/``."""
SIGNIN_COOKIE: Final = "lfr_signin"
"""The sign-in form's own token (double submit: the form and this cookie must agree)."""
SIGNIN_FORM_MAX_AGE_S: Final = 3600
"""The sign-in form's token lasts an hour; an older form is refused and shown again."""

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
"""What a ``PageRoute`` may answer (HEAD comes with GET)."""
PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp handler."""

_RESERVED_PATHS: Final = frozenset({"/", "/signin", "/signout"})


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The console's limits; every field has a default fit for a van."""

    sessions: SessionConfig = field(default_factory=SessionConfig)
    """How long sessions live and how many there may be."""
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    """When failed sign-ins lock a name or an address out."""
    max_body_bytes: int = 64 * 1024
    """Largest request body (forms, JSON) unless a ``PageRoute`` allows more; more is 413."""
    max_concurrent_sign_ins: int = 2
    """Password checks running at once (scrypt: 16 MiB and tens of ms each)."""
    sign_in_wait_s: float = 10.0
    """A sign-in waiting longer than this for a free password check gets 503."""
    van_id: str = ""
    """The van's id, shown in every page's header ("" shows none)."""

    def __post_init__(self) -> None:
        require_at_least("ConsoleConfig.max_body_bytes", self.max_body_bytes, 1024)
        require_at_least("ConsoleConfig.max_concurrent_sign_ins", self.max_concurrent_sign_ins,
                         1)
        require_positive("ConsoleConfig.sign_in_wait_s", self.sign_in_wait_s)
        if len(self.van_id) > 64 or not self.van_id.isprintable():
            raise ConfigError(f"ConsoleConfig.van_id must be 0-64 printable characters, got "
                              f"{printable(self.van_id)!r}")


@dataclass(frozen=True, slots=True)
class PageRoute:
    """One route a page module adds to the console; see the module docstring."""

    method: HttpMethod
    """The HTTP method; GET also answers HEAD."""
    path: str
    """An aiohttp path (``/alerts``, ``/alerts/{alert_id}``): starts with ``/``, not one of
    the console's own routes (``/``, ``/signin``, ``/signout``, ``/static/...``)."""
    handler: PageHandler
    """Runs only for a signed-in session with ``role``, after the CSRF check."""
    role: Role = Role.OPERATOR
    """The role needed (checked on the server: 403 otherwise)."""
    max_body_bytes: int | None = None
    """Largest body of this route; None: ``ConsoleConfig.max_body_bytes``."""

    def __post_init__(self) -> None:
        if self.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise ConfigError(f"PageRoute.method must be GET, POST, PUT, PATCH or DELETE, got "
                              f"{self.method!r}")
        if (not self.path.startswith("/") or self.path in _RESERVED_PATHS
                or self.path == "/static" or self.path.startswith("/static/")):
            raise ConfigError(f"PageRoute.path {self.path!r} must start with / and not be one "
                              "of the console's own routes")
        Role(self.role)
        if self.max_body_bytes is not None:
            require_at_least("PageRoute.max_body_bytes", self.max_body_bytes, 1)


@dataclass(frozen=True, slots=True)
class NavLink:
    """One section in the shell's navigation."""

    path: str
    """Where it links."""
    label: str
    """What it says."""
    role: Role = Role.OPERATOR
    """Shown only to accounts with this role (the route checks it too)."""


NAVIGATION: Final = (
    NavLink("/alerts", "Alerts"),
    NavLink("/units", "Units"),
    NavLink("/watchlist", "Watchlist", Role.SUPERVISOR),
    NavLink("/report", "Report"),
    NavLink("/audit", "Audit"),
)
"""The sections every page links to, in this order; their pages are ``PageRoute``s."""

CONSOLE_CONFIG: Final = web.AppKey("lfr_console_config", ConsoleConfig)
"""The app's ``ConsoleConfig`` (``request.app[CONSOLE_CONFIG]``)."""
CONSOLE_SESSIONS: Final = web.AppKey("lfr_console_sessions", SessionStore)
"""The app's sessions."""
CONSOLE_THROTTLE: Final = web.AppKey("lfr_console_throttle", SignInThrottle)
"""The app's sign-in throttle."""
CONSOLE_ACCOUNTS: Final = web.AppKey[AccountLookup]("lfr_console_accounts")
"""Looks an account up (on a worker thread): for live views re-checking their session."""


async def live_view_signed_in(request: web.Request) -> bool:
    """Whether a live view's browser is still signed in (``still_signed_in``): a page module
    checks it before each event it sends, and closes the view when it is not."""
    return await still_signed_in(request, request.app[CONSOLE_SESSIONS],
                                 request.app[CONSOLE_ACCOUNTS])


def _throttled_address(remote: str | None) -> str:
    """The address a failed sign-in counts against: "" (none) for loopback clients."""
    if remote is None:
        return "unknown"
    try:
        return "" if ipaddress.ip_address(remote).is_loopback else remote
    except ValueError:  # a Unix socket, or a proxy's odd value: counted as it is
        return remote


def build_console_app(users: UserStore, config: ConsoleConfig, *,
                      pages: Sequence[PageRoute] = (),
                      clock: Callable[[], float] = time.monotonic,
                      audit: AuditRecorder | None = None) -> web.Application:
    """The console's application (module docstring): its own routes and ``pages``, behind the
    security middlewares. ``clock`` (monotonic seconds) times sessions and the throttle;
    ``audit`` records sign-ins and sign-outs (None: not recorded)."""
    sessions = SessionStore(config.sessions, clock=clock)
    throttle = SignInThrottle(config.throttle, clock=clock)
    limits: dict[web.AbstractRoute, int] = {}
    public: set[web.AbstractResource] = set()

    async def lookup_account(name: str) -> UserAccount | None:
        return await asyncio.to_thread(users.account, name)

    app = web.Application(
        # The largest any route allows; body_limit_middleware narrows it per route.
        client_max_size=max([config.max_body_bytes,
                             *(p.max_body_bytes for p in pages if p.max_body_bytes)]),
        middlewares=[
            body_limit_middleware(config.max_body_bytes, limits),
            session_middleware(sessions, lookup_account,
                               lambda request: request.match_info.route.resource in public),
        ])
    app[CONSOLE_CONFIG] = config
    app[CONSOLE_SESSIONS] = sessions
    app[CONSOLE_THROTTLE] = throttle
    app[CONSOLE_ACCOUNTS] = lookup_account
    app.on_response_prepare.append(add_security_headers)

    trail = SignInTrail(audit, clock=clock) if audit is not None else None
    sign_in = _SignIn(users, sessions, throttle, config, trail=trail)
    if trail is not None:
        app.on_cleanup.append(lambda _app: _flushed(trail))
    signin_resource = app.router.add_resource("/signin", name="signin")
    signin_resource.add_route("GET", sign_in.form)
    signin_resource.add_route("POST", sign_in.submit)
    public.add(signin_resource)
    # Browsers ask every site for an icon; the console has none: an empty answer, not a 404.
    icon = app.router.add_resource("/favicon.ico")
    icon.add_route("GET", _no_icon)
    public.add(icon)
    public.add(app.router.add_static("/static/", STATIC_DIR, show_index=False,
                                     follow_symlinks=False))
    app.router.add_get("/", _home, name="home")
    app.router.add_post("/signout", sign_in.sign_out, name="signout")
    for page in pages:
        guarded = _with_role(page.handler, page.role)
        route = (app.router.add_get(page.path, guarded) if page.method == "GET"  # and HEAD
                 else app.router.add_route(page.method, page.path, guarded))
        if page.max_body_bytes is not None:
            limits[route] = page.max_body_bytes
    return app


def _with_role(handler: PageHandler, role: Role) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            require_role(request, role)
        except web.HTTPForbidden as refused:
            if request.method != "GET" or "text/html" not in request.headers.get("Accept", ""):
                raise  # scripts and forms get the plain refusal
            # A person who followed a link gets a page they can read at arm's length.
            return shell_page(request, "Not allowed",
                              f"<p>{html.escape(refused.text or 'Not allowed.')}</p>"
                              '<p><a href="/">Back to the console</a></p>', status=403)
        return await handler(request)

    return guarded


# -- pages ----------------------------------------------------------------------------------


def csrf_field(request: web.Request) -> str:
    """The hidden ``csrf_token`` input a form of a signed-in page must include."""
    token = html.escape(current_session(request).csrf_token)
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">'


def shell_page(request: web.Request, title: str, main_html: str, *,
               scripts: Sequence[str] = (), status: int = 200) -> web.Response:
    """A signed-in page: header, navigation (``NAVIGATION`` for the account's role), the
    sign-out button, then ``<main>`` with ``title`` as its heading and ``main_html`` (HTML the
    caller built, untrusted text escaped) under it. ``scripts`` are paths under ``/static/``
    loaded deferred after ``console.js``."""
    session = current_session(request)
    config = request.app[CONSOLE_CONFIG]
    for script in scripts:
        if not script.startswith("/static/") or ".." in script:
            raise ValueError(f"shell_page scripts must be files under /static/, got {script!r}")
    links = "".join(
        f'<li><a href="{link.path}"{_CURRENT if request.path == link.path else ""}>'
        f"{html.escape(link.label)}</a></li>"
        for link in NAVIGATION if session.role.allows(link.role))
    head_scripts = "".join(f'<script src="{html.escape(s)}" defer></script>' for s in scripts)
    body = (
        '<header class="top">'
        f'<p class="brand">lfr console{_van_label(config)}</p>'
        f'<nav aria-label="Console sections"><ul>{links}</ul></nav>'
        '<form class="signout" method="post" action="/signout">'
        f'<p>Signed in as <strong>{html.escape(session.account)}</strong> '
        f"({session.role.value})</p>{csrf_field(request)}"
        '<button type="submit">Sign out</button></form>'
        "</header>"
        f'<main id="main" tabindex="-1"><h1>{html.escape(title)}</h1>{main_html}</main>')
    meta = f'<meta name="lfr-csrf-token" content="{html.escape(session.csrf_token)}">'
    return _html_response(_document(title, body, head=meta + head_scripts, with_script=True),
                          status)


async def _home(request: web.Request) -> web.StreamResponse:
    session = current_session(request)
    items = "".join(
        f'<li><a href="{link.path}">{html.escape(link.label)}</a>: {_SECTION_TEXT[link.path]}'
        "</li>" for link in NAVIGATION if session.role.allows(link.role))
    return shell_page(request, "Console", f'<p>Choose a section.</p><ul class="sections">'
                                          f"{items}</ul>")


_CURRENT: Final = ' aria-current="page"'

_SECTION_TEXT: Final = {
    "/alerts": "live alerts to confirm or dismiss, newest first",
    "/units": "each camera unit: online, health, watchlist",
    "/watchlist": "the deployment's watchlist: push to units, purge at the end",
    "/report": "the deployment's figures, the false-alert rate, CSV",
    "/audit": "the audit trail and its verification",
}


def outcome_page(request: web.Request, title: str, text: str, *, back: str, back_label: str,
                 status: int = 200) -> web.Response:
    """A signed-in page saying how an action ended: ``text`` (escaped) as an alert when
    ``status`` is an error, else as a status line, then a link "Back to ``back_label``" to
    ``back``, a path of this console (e.g. ``/watchlist#build``)."""
    if not back.startswith("/") or back.startswith("//"):
        raise ValueError(f"outcome_page back must be a path of this console, got {back!r}")
    said = ('<p class="error" role="alert">' if status >= 400 else '<p role="status">')
    return shell_page(request, title, (
        f"{said}{html.escape(text)}</p>"
        f'<p><a href="{html.escape(back)}">Back to {html.escape(back_label)}</a></p>'),
        status=status)


def _van_label(config: ConsoleConfig) -> str:
    return f" <span>van {html.escape(config.van_id)}</span>" if config.van_id else ""


def _document(title: str, body: str, *, head: str = "", with_script: bool = False) -> str:
    script = '<script src="/static/console.js" defer></script>' if with_script else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - lfr console</title>"
        f'<link rel="stylesheet" href="/static/console.css">{script}{head}</head>'
        f'<body><a class="skip-link" href="#main">Skip to main content</a>{body}</body></html>')


async def _no_icon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


# -- sign-in and sign-out -------------------------------------------------------------------


async def _flushed(trail: SignInTrail) -> None:
    trail.flush()


class _SignIn:
    """The sign-in form, its submission and sign-out."""

    def __init__(self, users: UserStore, sessions: SessionStore, throttle: SignInThrottle,
                 config: ConsoleConfig, *, trail: SignInTrail | None) -> None:
        self._users = users
        self._sessions = sessions
        self._throttle = throttle
        self._config = config
        self._trail = trail
        self._checks = asyncio.Semaphore(config.max_concurrent_sign_ins)
        self._refusals = LogBudget(log, "console sign-in")

    async def form(self, request: web.Request) -> web.StreamResponse:
        """GET /signin: the form (also to a signed-in browser: signing in as someone else
        ends the session it has)."""
        return self._form_page(request, "", 200)

    def _form_page(self, request: web.Request, problem: str, status: int, *,
                   name: str = "", headers: dict[str, str] | None = None) -> web.Response:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        error = (f'<p class="error" role="alert" id="signin-problem">{html.escape(problem)}</p>'
                 if problem else "")
        described = ' aria-describedby="signin-problem"' if problem else ""
        body = (
            '<header class="top"><p class="brand">lfr console'
            f"{_van_label(self._config)}</p></header>"
            '<main id="main" tabindex="-1" class="signin"><h1>Sign in</h1>'
            f'{error}<form method="post" action="/signin">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">'
            '<label for="signin-name">Name</label>'
            f'<input id="signin-name" name="name" autocomplete="username" required '
            f'maxlength="{MAX_NAME_CHARS}" value="{html.escape(name)}" autofocus{described}>'
            '<label for="signin-password">Password</label>'
            '<input id="signin-password" name="password" type="password" '
            f'autocomplete="current-password" required maxlength="{MAX_PASSWORD_CHARS}">'
            '<button type="submit">Sign in</button></form></main>')
        response = _html_response(_document("Sign in", body), status)
        response.headers.update(headers or {})
        response.set_cookie(SIGNIN_COOKIE, token, path="/signin", httponly=True,
                            samesite="Strict", secure=request.secure,
                            max_age=SIGNIN_FORM_MAX_AGE_S)
        return response

    async def submit(self, request: web.Request) -> web.StreamResponse:
        """POST /signin (module docstring)."""
        form = await request.post()
        name, password, token = (form.get("name"), form.get("password"), form.get(CSRF_FIELD))
        expected = request.cookies.get(SIGNIN_COOKIE)
        if (not isinstance(token, str) or expected is None or len(token) > MAX_TOKEN_CHARS
                or not hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                                           expected.encode("utf-8", "surrogatepass"))):
            return self._form_page(request, "The sign-in form had expired. Please sign in "
                                   "again.", 403)
        if not isinstance(name, str) or not isinstance(password, str) or not name:
            return self._form_page(request, "Give your name and password.", 400)
        # Every browser on the van's laptop signs in from loopback: counting failures per
        # address there would let one officer's typos lock every other account out, so on
        # loopback only the account's own failures count.
        address = _throttled_address(request.remote)
        wait_s = self._throttle.retry_after(name, address)
        if wait_s is not None:
            if self._trail is not None and self._trail.lockout_is_new(name, address, wait_s):
                self._trail.throttled(await self._typed_account(name), printable(address),
                                      wait_s)
            minutes = max(1, round(wait_s / 60))
            return self._form_page(
                request, f"Too many failed sign-ins. Try again in about {minutes} minute"
                f"{'' if minutes == 1 else 's'}.", 429, name=name,
                headers={"Retry-After": retry_after_header(wait_s)})
        account = await self._check(name, password)
        if account is None:
            self._throttle.failed(name, address)
            # A name that is no account is not logged: people type passwords into it.
            typed = await self._typed_account(name)
            self._refusals.warning("console: sign-in refused for %s from %s",
                                   f"account {typed}" if typed else "a name that is no account",
                                   printable(address) or "loopback")
            if self._trail is not None:
                self._trail.failed(typed, printable(address))
            return self._form_page(request, "The name or the password is wrong.", 401,
                                   name=name)
        self._throttle.succeeded(name)
        session = self._sessions.start(account, replacing=request.cookies.get(SESSION_COOKIE))
        log.info("console: %s signed in (%s)", printable(account.name), account.role.value)
        if self._trail is not None:
            self._trail.signed_in(account, printable(address))
        response = _see_other("/")
        response.set_cookie(SESSION_COOKIE, session.token, path="/", httponly=True,
                            samesite="Strict", secure=request.secure)
        response.del_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    async def _typed_account(self, name: str) -> str:
        """``name`` as typed (printable) when it names an account, else "" (module
        docstring: a name that is no account may be a password)."""
        known = await asyncio.to_thread(self._users.account, name) is not None
        return printable(name, max_chars=MAX_NAME_CHARS) if known else ""

    async def _check(self, name: str, password: str) -> UserAccount | None:
        try:
            async with asyncio.timeout(self._config.sign_in_wait_s):
                await self._checks.acquire()
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="too many sign-ins at once; try again\n",
                                             headers={"Retry-After": "5"}) from None
        try:
            return await asyncio.to_thread(self._users.verify, name, password)
        finally:
            self._checks.release()

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        """POST /signout: the session ends (the middleware checked it and its CSRF token)."""
        session: Session = current_session(request)
        self._sessions.end(session.token)
        log.info("console: %s signed out", printable(session.account))
        if self._trail is not None:
            self._trail.signed_out(session.account)
        response = _see_other("/signin")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response
