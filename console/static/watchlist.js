// The Watchlist page's script. (1) The push form: the signed watchlist file goes to the van as
// multipart/form-data with the CSRF token in the X-CSRF-Token header, so the van reads it
// straight into memory (a plain form post would have the server spool it to a temporary file
// on disk); the van's answer is shown in the form's status line. (2) A subject without a
// reference photo: its broken thumbnail is replaced by the words "no reference photo".
"use strict";

(function () {
  function say(region, text, problem) {
    region.setAttribute("role", problem ? "alert" : "status");
    region.className = problem ? "error" : "";
    region.textContent = text;
  }

  async function push(form, event) {
    event.preventDefault();
    const region = document.getElementById("push-result");
    const button = form.querySelector('button[type="submit"]');
    const file = form.querySelector('input[type="file"]');
    if (!file || !file.files || file.files.length !== 1) {
      say(region, "Choose one signed watchlist file first.", true);
      return;
    }
    const megabytes = (file.files[0].size / (1024 * 1024)).toFixed(1);
    say(region, "Uploading " + megabytes + " MB and checking the signature...", false);
    if (button) {
      button.disabled = true;
    }
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: {
          "Accept": "application/json",
          "X-CSRF-Token": window.lfrConsole.csrfToken(),
        },
        body: new FormData(form),
      });
      if (response.status === 401) {
        window.location.assign("/signin");
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === 0) {
        const answer = await response.json();
        const reason = answer.reason ? " (" + answer.reason + ")" : "";
        say(region, (answer.ok ? "" : "Refused" + reason + ": ") + answer.message, !answer.ok);
      } else {
        say(region, "Refused (HTTP " + response.status + "): " + (await response.text()), true);
      }
    } catch (error) {
      say(region, "The van could not be reached; nothing was pushed by this page.", true);
    } finally {
      if (button) {
        button.disabled = false;
      }
    }
  }

  function noPhoto(image) {
    const text = document.createElement("span");
    text.textContent = "(no reference photo)";
    image.replaceWith(text);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("push-form");
    if (form) {
      form.addEventListener("submit", function (event) {
        push(form, event);
      });
    }
    document.querySelectorAll("img.subject-photo").forEach(function (image) {
      if (image.complete && image.naturalWidth === 0) {  // failed before this script ran
        noPhoto(image);
        return;
      }
      image.addEventListener("error", function () {
        noPhoto(image);
      });
    });
  });
})();
