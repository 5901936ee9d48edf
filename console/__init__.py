"""The van's operator console: the web pages an officer signs in to, to see alerts and decide
on them (issue 10).

Layering: ``console`` sits above ``actors`` (the van's stores and actors), ``audit``,
``lfr.config`` and the enrolment and signing helpers of ``lfr`` (``watchlist_build``,
``photo_faces``, ``reference_photos``, ``watchlist_sign``, none of which imports it), and below
nothing but the van node, which serves it (``lfr.van_node``) on loopback. Nothing in
``actors``, ``audit``, ``secure`` or ``runtime`` imports it.

Modules, bottom up: ``users`` (``UserStore``: accounts, roles and scrypt password hashes in the
van's state folder), ``sessions`` (``SessionStore``: server-side sessions with CSRF tokens,
idle and absolute expiry; ``SignInThrottle``: failed sign-ins per account and per address),
``security`` (the middlewares: security headers, body size, who is signed in, CSRF; the
``require_role`` check), ``app`` (``build_console_app``: sign-in, sign-out, the shell page,
static files, and the ``PageRoute`` other modules add their pages with), ``account_trail``
(the accounts followed into the van's audit trail), then the pages; the Watchlist page's build
section is ``photo_upload`` (a folder of photos read into memory with limits),
``watchlist_build_job`` (``WatchlistBuilder``: one build per van, its progress) and
``watchlist_build_page`` (its routes: upload, progress, sign, push, download, discard).
``static/`` holds the plain CSS and JavaScript the pages load (no build step; the CSP forbids
inline script).
docs/CONSOLE.md explains accounts, sessions, CSRF, throttling and how to add a page.
"""
