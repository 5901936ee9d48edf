// The operator console's shared script, loaded by every signed-in page (no inline script:
// the CSP allows only files from this origin). It gives page scripts one way to talk to the
// server: lfrConsole.send(method, url, body) sends JSON with the session's CSRF token (read
// from <meta name="lfr-csrf-token">), and a session that has ended sends the browser to the
// sign-in page instead of failing silently.
"use strict";

(function () {
  const SIGN_IN = "/signin";

  function csrfToken() {
    const meta = document.querySelector('meta[name="lfr-csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function signedOut(response) {
    if (response.status === 401) {
      window.location.assign(SIGN_IN);
      return true;
    }
    return false;
  }

  // A JSON request to the console. GET/HEAD carry no body and no token; anything else sends
  // the CSRF token the server checks. Resolves to the Response (after 401: never, the page
  // goes to sign-in); rejects only when the network fails.
  async function send(method, url, body) {
    const upper = method.toUpperCase();
    const init = {
      method: upper,
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      cache: "no-store",
    };
    if (upper !== "GET" && upper !== "HEAD") {
      init.headers["X-CSRF-Token"] = csrfToken();
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
    }
    const response = await fetch(url, init);
    if (signedOut(response)) {
      return new Promise(function () {});  // the page is going away
    }
    return response;
  }

  // Announce text to screen readers through the page's live region (made on first use).
  function announce(text) {
    let region = document.getElementById("lfr-announcer");
    if (!region) {
      region = document.createElement("div");
      region.id = "lfr-announcer";
      region.className = "visually-hidden";
      region.setAttribute("role", "status");
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    region.textContent = text;
  }

  // The skip link moves focus to <main> (tabindex=-1) so keyboard users start there.
  document.addEventListener("DOMContentLoaded", function () {
    const skip = document.querySelector(".skip-link");
    const main = document.getElementById("main");
    if (skip && main) {
      skip.addEventListener("click", function (event) {
        event.preventDefault();
        main.focus();
      });
    }
  });

  window.lfrConsole = Object.freeze({ csrfToken: csrfToken, send: send, announce: announce });
})();
