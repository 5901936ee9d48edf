// The Watchlist page's build section. (1) The folder form: the photos the supervisor picked
// (one sub-folder per subject) go to the van as multipart/form-data, one "photo" part per file
// named by its path inside the folder, with the CSRF token in the X-CSRF-Token header, so the
// van reads them straight into memory. The page's limits (data-max-* on the form) are checked
// here first for a quick answer; the van enforces them itself. The upload's bytes move the
// progress bar, then (2) the build's real counts from /watchlist/build/progress do, polled
// every second until the build ends; then the page reloads to show the result and the next
// step (sign, push, or download).
"use strict";

(function () {
  const POLL_MS = 1000;
  const POLL_GIVE_UP = 3600;  // polls (an hour) before the page stops asking by itself

  function say(region, text, problem) {
    region.setAttribute("role", problem ? "alert" : "status");
    region.className = problem ? "error" : "";
    region.textContent = text;
  }

  function bar() {
    return {
      progress: document.getElementById("build-progress"),
      text: document.getElementById("build-progress-text"),
    };
  }

  function show(done, total, text) {
    const parts = bar();
    if (!parts.progress) {
      return;
    }
    parts.progress.max = Math.max(total, 1);
    parts.progress.value = Math.min(done, Math.max(total, 1));
    if (parts.text) {
      parts.text.textContent = text;
    }
  }

  function megabytes(bytes) {
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function pathOf(file) {
    return file.webkitRelativePath || file.name;
  }

  // The first limit the chosen files break, in the van's words, or "".
  function overLimit(form, files) {
    const maxFiles = Number(form.dataset.maxFiles);
    const maxFile = Number(form.dataset.maxFileBytes);
    const maxTotal = Number(form.dataset.maxTotalBytes);
    let total = 0;
    for (let index = 0; index < files.length; index += 1) {
      const file = files[index];
      if (index + 1 > maxFiles) {
        return pathOf(file) + ": the folder holds more than " + maxFiles +
          " files, the limit of one upload";
      }
      if (file.size > maxFile) {
        return pathOf(file) + ": over " + maxFile.toLocaleString("en") +
          " bytes, the limit of one file";
      }
      total += file.size;
      if (total > maxTotal) {
        return pathOf(file) + ": the files up to this one are over " +
          maxTotal.toLocaleString("en") + " bytes, the limit of one upload";
      }
    }
    return "";
  }

  async function poll(region) {
    for (let count = 0; count < POLL_GIVE_UP; count += 1) {
      let answer;
      try {
        const response = await window.lfrConsole.send("GET", "/watchlist/build/progress");
        answer = await response.json();
      } catch (error) {
        say(region, "The van could not be reached; reload the page to follow the build.", true);
        return;
      }
      show(answer.done, answer.total, answer.text);
      if (answer.state === "built" || answer.state === "failed" || answer.state === "idle") {
        window.lfrConsole.announce(answer.text);
        window.location.reload();
        return;
      }
      await new Promise(function (resolve) { window.setTimeout(resolve, POLL_MS); });
    }
  }

  function upload(form, region, button, files) {
    const body = new FormData();
    let bytes = 0;
    for (const file of files) {
      body.append("photo", file, pathOf(file));
      bytes += file.size;
    }
    const request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("action"));
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRF-Token", window.lfrConsole.csrfToken());
    request.responseType = "json";
    request.upload.addEventListener("progress", function (event) {
      const total = event.lengthComputable ? event.total : bytes;
      show(event.loaded, total, "Uploading " + megabytes(event.loaded) + " of " +
        megabytes(total) + "...");
    });
    request.addEventListener("load", function () {
      if (request.status === 401) {
        window.location.assign("/signin");
        return;
      }
      const answer = request.response;
      const message = answer && answer.message ? answer.message :
        "Refused (HTTP " + request.status + ")";
      say(region, message, request.status !== 200);
      if (request.status === 200) {
        poll(region);
      } else {
        button.disabled = false;
      }
    });
    request.addEventListener("error", function () {
      say(region, "The upload failed: the van refused it or could not be reached.", true);
      button.disabled = false;
    });
    button.disabled = true;
    say(region, "Uploading " + files.length + " files (" + megabytes(bytes) + ")...", false);
    request.send(body);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("build-form");
    const region = document.getElementById("build-result");
    const status = document.getElementById("build-status");
    if (form && region) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        const input = document.getElementById("build-folder");
        const button = form.querySelector('button[type="submit"]');
        const files = input && input.files ? Array.from(input.files) : [];
        if (files.length === 0) {
          say(region, "Choose a folder of photos first.", true);
          return;
        }
        const problem = overLimit(form, files);
        if (problem) {
          say(region, "Refused: " + problem, true);
          return;
        }
        upload(form, region, button, files);
      });
    }
    // Another supervisor's build, or this page reloaded during one: follow it.
    if (status && region && ["receiving", "loading", "building"].indexOf(
      status.dataset.state) >= 0) {
      poll(region);
    }
  });
})();
