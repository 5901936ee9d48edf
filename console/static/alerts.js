// The live alerts page (console/alerts_page.py). Alerts waiting for a decision are pinned at
// the top, newest first; decided ones follow, newest first. Each shows the live crop beside
// the subject's reference photo, the subject, score and threshold, unit and camera, capture
// time and age (updated every second), and the officer's three decisions with an optional
// note. New alerts arrive over server-sent events (/alerts/stream): each one is fetched, shown,
// announced to screen readers, marked "New" and, unless turned off, sounded (a Web Audio
// beep: no sound file). A lost stream is reconnected with a growing wait, and the lists are
// reloaded when it is back. Everything works from the keyboard (the page lists the keys).
// Untrusted text (ids, notes, names) is only ever set as textContent, never as HTML.
"use strict";

(function () {
  const LIST_URL = "/alerts/list.json";
  const STREAM_URL = "/alerts/stream";
  const PAGE_SIZE = 50;             // alerts per list request (the server's most)
  const MAX_KEPT = 500;             // alerts kept on the page; older decided ones are dropped
  const RETRY_MIN_MS = 1000;        // first wait before reconnecting the stream
  const RETRY_MAX_MS = 30000;       // longest wait between reconnections
  const FRESH_MS = 60000;           // how long a new alert stays marked "New" unless focused
  const ACTIONS = [
    { decision: "confirmed", label: "Confirm", key: "c" },
    { decision: "dismissed", label: "Dismiss as false alert", key: "d" },
    { decision: "cannot_tell", label: "Cannot tell", key: "u" },
  ];
  const DECIDED_TEXT = {
    confirmed: "Confirmed",
    dismissed: "Dismissed as a false alert",
    cannot_tell: "Cannot tell",
  };

  const entries = new Map();        // alert key -> entry {data, item, article, parts, ...}
  let clockOffsetS = 0;             // the van's clock minus this browser's, in seconds
  let nextWaiting = null;           // before_id of the next page of undecided alerts
  let nextAll = null;               // before_id of the next page of all alerts
  let source = null;
  let retryMs = RETRY_MIN_MS;
  let reconnectTimer = null;
  let reloadOnOpen = false;
  let reloading = false;
  let reloadAgain = false;
  let reloadTimer = null;
  let audio = null;
  let serial = 0;
  let baseTitle = "";

  // -- small helpers -----------------------------------------------------------------------

  function byId(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function alertKey(unit, seq) {
    return JSON.stringify([unit, seq]);
  }

  function vanNow() {
    return Date.now() / 1000 + clockOffsetS;
  }

  function formatAge(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) {
      return s + " s";
    }
    if (s < 3600) {
      return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
    }
    if (s < 86400) {
      return Math.floor(s / 3600) + " h " + String(Math.floor(s / 60) % 60).padStart(2, "0") +
        " min";
    }
    return Math.floor(s / 86400) + " d " + Math.floor(s / 3600) % 24 + " h";
  }

  function formatTime(epochS) {
    const when = new Date(epochS * 1000);
    const time = when.toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
    const today = new Date().toDateString() === when.toDateString();
    return today ? time : when.toLocaleDateString() + " " + time;
  }

  function score(value) {
    return typeof value === "number" ? value.toFixed(3) : "?";
  }

  // Speak through the page's assertive live region (new alerts) or the console's polite one.
  function announce(text, urgent) {
    const region = urgent ? byId("alerts-live") : null;
    if (!region) {
      window.lfrConsole.announce(text);
      return;
    }
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function setConnection(text) {
    byId("alerts-connection").textContent = text;
  }

  // -- sound -------------------------------------------------------------------------------

  // Browsers start audio only after the person has used the page; the first key or click
  // makes (or resumes) the context.
  function wakeAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) {
      return;
    }
    if (!audio) {
      audio = new Context();
    }
    if (audio.state === "suspended") {
      audio.resume().catch(function () {});
    }
  }

  // Two short rising tones.
  function beep() {
    if (!byId("alerts-sound").checked || !audio || audio.state !== "running") {
      return;
    }
    [[880, 0], [1175, 0.18]].forEach(function (tone) {
      const start = audio.currentTime + tone[1];
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = tone[0];
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.35, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.15);
      oscillator.connect(gain);
      gain.connect(audio.destination);
      oscillator.start(start);
      oscillator.stop(start + 0.16);
    });
  }

  // -- one alert ---------------------------------------------------------------------------

  function build(data) {
    const id = "alert-" + (++serial);
    const item = el("li");
    const article = el("article", "alert");
    article.tabIndex = 0;
    article.setAttribute("aria-labelledby", id + "-title");
    article.setAttribute("aria-describedby", id + "-state");
    item.appendChild(article);

    const header = el("header", "alert-head");
    const title = el("h3", "alert-title");
    title.id = id + "-title";
    const badge = el("span", "alert-new", "New");
    const subject = el("span", "alert-subject");
    title.append(badge, subject);
    const scoreLine = el("p", "alert-score");
    header.append(title, scoreLine);

    const faces = el("div", "alert-faces");
    const live = el("figure", "alert-face");
    const liveCaption = el("figcaption", "", "Live capture");
    const reference = el("figure", "alert-face");
    const referenceCaption = el("figcaption", "", "Reference photo");
    live.appendChild(liveCaption);
    reference.appendChild(referenceCaption);
    faces.append(live, reference);

    const facts = el("dl", "alert-facts");
    const unit = el("dd");
    const camera = el("dd");
    const captured = el("dd");
    const age = el("dd", "alert-age");
    [["Unit", unit], ["Camera", camera], ["Captured", captured], ["Age", age]].forEach(
      function (pair) { facts.append(el("dt", "", pair[0]), pair[1]); });

    const state = el("p", "alert-state");
    state.id = id + "-state";
    const problem = el("p", "error alert-problem");
    problem.setAttribute("role", "alert");
    problem.hidden = true;

    const decide = el("div", "alert-decide");
    decide.setAttribute("role", "group");
    decide.setAttribute("aria-label", "Decision");
    const noteLabel = el("label", "", "Note (optional, no names of people)");
    noteLabel.htmlFor = id + "-note";
    const note = el("input", "alert-note");
    note.id = id + "-note";
    note.type = "text";
    note.maxLength = 500;
    note.autocomplete = "off";
    const buttons = el("div", "alert-buttons");
    const actionButtons = ACTIONS.map(function (action) {
      const button = el("button", "alert-action alert-" + action.decision);
      button.type = "button";
      button.append(action.label + " ", el("kbd", "", action.key.toUpperCase()));
      button.addEventListener("click", function () { decideOn(entry, action.decision); });
      buttons.appendChild(button);
      return button;
    });
    decide.append(noteLabel, note, buttons);
    const change = el("button", "alert-change", "Change decision");
    change.type = "button";
    change.addEventListener("click", function () {
      entry.changing = !entry.changing;
      refresh(entry);
      if (entry.changing) {
        actionButtons[0].focus();
      }
    });

    article.append(header, faces, facts, state, change, decide, problem);
    article.addEventListener("focus", function () { unmarkFresh(entry); });

    const entry = {
      data: data, item: item, article: article, fresh: false, changing: false, busy: false,
      freshTimer: null, liveImage: null, referenceImage: null,
      parts: {
        subject: subject, scoreLine: scoreLine, live: live, reference: reference, unit: unit,
        camera: camera, captured: captured, age: age, state: state, problem: problem,
        decide: decide, note: note, buttons: actionButtons, change: change,
      },
    };
    return entry;
  }

  function setImage(figure, current, url, alt, missing) {
    if (current && current.getAttribute("src") === url) {
      return current;
    }
    Array.from(figure.querySelectorAll("img, .alert-missing")).forEach(function (node) {
      node.remove();
    });
    if (!url) {
      figure.insertBefore(el("p", "alert-missing", missing), figure.firstChild);
      return null;
    }
    const image = el("img");
    image.src = url;
    image.alt = alt;
    image.decoding = "async";
    figure.insertBefore(image, figure.firstChild);
    return image;
  }

  function refresh(entry) {
    const data = entry.data;
    const parts = entry.parts;
    const decided = data.decision !== null;
    entry.article.classList.toggle("undecided", !decided);
    entry.article.classList.toggle("fresh", entry.fresh);
    ["confirmed", "dismissed", "cannot_tell"].forEach(function (kind) {
      entry.article.classList.toggle("decided-" + kind, decided && data.decision.decision === kind);
    });
    if (data.readable) {
      parts.subject.textContent = "Subject " + data.subject;
      parts.scoreLine.textContent = "Score " + score(data.score) + " (threshold " +
        score(data.threshold) + ")";
    } else {
      parts.subject.textContent = "Alert that does not open";
      parts.scoreLine.textContent = "The van cannot open this alert (" + data.problem +
        "): its unit may have been revoked.";
    }
    entry.liveImage = setImage(parts.live, entry.liveImage, data.crop_url,
      "Face captured by unit " + data.unit + ", camera " + (data.camera || "unknown"),
      "No live capture");
    entry.referenceImage = setImage(parts.reference, entry.referenceImage, data.photo_url,
      "Reference photo of subject " + data.subject,
      "No reference photo in the active deployment");
    parts.unit.textContent = data.unit + " (alert " + data.seq + ")";
    parts.camera.textContent = data.camera || "unknown";
    parts.captured.textContent = formatTime(data.captured_at);
    parts.age.textContent = formatAge(vanNow() - data.captured_at);
    if (decided) {
      const d = data.decision;
      let text = DECIDED_TEXT[d.decision] + " by " + d.operator + " (" + d.role + ") at " +
        formatTime(d.decided_at) + ".";
      if (d.note) {
        text += " Note: " + d.note;
      }
      parts.state.textContent = text;
    } else {
      parts.state.textContent = "Waiting for a decision.";
    }
    parts.decide.hidden = decided && !entry.changing;
    parts.change.hidden = !decided;
    parts.change.textContent = entry.changing ? "Keep this decision" : "Change decision";
    parts.change.setAttribute("aria-expanded", String(entry.changing));
    parts.buttons.forEach(function (button) { button.disabled = entry.busy; });
  }

  function upsert(data, fresh) {
    const key = alertKey(data.unit, data.seq);
    let entry = entries.get(key);
    if (!entry) {
      entry = build(data);
      entries.set(key, entry);
    }
    entry.data = data;
    if (fresh && data.decision === null) {
      markFresh(entry);
    }
    refresh(entry);
    return entry;
  }

  function markFresh(entry) {
    entry.fresh = true;
    window.clearTimeout(entry.freshTimer);
    entry.freshTimer = window.setTimeout(function () { unmarkFresh(entry); }, FRESH_MS);
  }

  function unmarkFresh(entry) {
    if (entry.fresh) {
      entry.fresh = false;
      window.clearTimeout(entry.freshTimer);
      entry.article.classList.remove("fresh");
    }
  }

  // -- the lists ---------------------------------------------------------------------------

  // Put each list's items in order, moving only what must move; focus stays where it was.
  function place(list, wanted) {
    const focused = document.activeElement;
    let next = list.firstChild;
    wanted.forEach(function (entry) {
      if (entry.item === next) {
        next = next.nextSibling;
      } else {
        list.insertBefore(entry.item, next);
      }
    });
    while (next) {
      const gone = next;
      next = next.nextSibling;
      gone.remove();
    }
    if (focused && focused !== document.activeElement && document.body.contains(focused)) {
      focused.focus({ preventScroll: true });
    }
  }

  function render() {
    const all = Array.from(entries.values()).sort(function (a, b) { return b.data.id - a.data.id; });
    const waiting = all.filter(function (e) { return e.data.decision === null; });
    let decided = all.filter(function (e) { return e.data.decision !== null; });
    if (all.length > MAX_KEPT) {  // drop the oldest decided alerts beyond the bound
      const dropped = decided.slice(Math.max(0, MAX_KEPT - waiting.length));
      dropped.forEach(function (e) { entries.delete(alertKey(e.data.unit, e.data.seq)); });
      decided = decided.slice(0, Math.max(0, MAX_KEPT - waiting.length));
    }
    place(byId("alerts-waiting"), waiting);
    place(byId("alerts-decided"), decided);
    byId("alerts-waiting-empty").hidden = waiting.length > 0;
    byId("alerts-decided-empty").hidden = decided.length > 0;
    byId("alerts-waiting-count").textContent = "(" + waiting.length + ")";
    byId("alerts-waiting-more").hidden = nextWaiting === null;
    byId("alerts-decided-more").hidden = nextAll === null;
    document.title = (waiting.length ? "(" + waiting.length + ") " : "") + baseTitle;
  }

  async function fetchJson(url) {
    const response = await window.lfrConsole.send("GET", url);
    if (!response.ok) {
      throw new Error(await problemOf(response));
    }
    return response.json();
  }

  async function problemOf(response) {
    try {
      const body = await response.json();
      return body.error || ("the van answered " + response.status);
    } catch (error) {
      return "the van answered " + response.status;
    }
  }

  function listUrl(undecided, beforeId) {
    let url = LIST_URL + "?limit=" + PAGE_SIZE;
    if (undecided) {
      url += "&undecided=1";
    }
    if (beforeId !== null) {
      url += "&before_id=" + encodeURIComponent(beforeId);
    }
    return url;
  }

  function takePage(page) {
    clockOffsetS = page.now - Date.now() / 1000;
    page.alerts.forEach(function (data) { upsert(data, false); });
  }

  // The first page of each list (at start, after a reconnection, when the stream says so).
  // One reload at a time; asked again meanwhile, it runs once more when this one ends.
  async function reload() {
    if (reloading) {
      reloadAgain = true;
      return;
    }
    reloading = true;
    try {
      const waiting = await fetchJson(listUrl(true, null));
      const all = await fetchJson(listUrl(false, null));
      takePage(waiting);
      takePage(all);
      nextWaiting = waiting.next_before_id;
      nextAll = all.next_before_id;
      render();
    } catch (error) {
      setConnection("Could not load the alerts: " + error.message + ". Retrying.");
      window.clearTimeout(reloadTimer);
      reloadTimer = window.setTimeout(reload, RETRY_MIN_MS * 5);
    } finally {
      reloading = false;
    }
    if (reloadAgain) {
      reloadAgain = false;
      reload();
    }
  }

  async function loadMore(undecided) {
    const before = undecided ? nextWaiting : nextAll;
    if (before === null) {
      return;
    }
    try {
      const page = await fetchJson(listUrl(undecided, before));
      takePage(page);
      if (undecided) {
        nextWaiting = page.next_before_id;
      } else {
        nextAll = page.next_before_id;
      }
      render();
      announce(page.alerts.length + " older alerts loaded.", false);
    } catch (error) {
      announce("Could not load older alerts: " + error.message, false);
    }
  }

  // -- deciding ----------------------------------------------------------------------------

  async function decideOn(entry, decision) {
    if (entry.busy) {
      return;
    }
    if (entry.data.decision !== null && !entry.changing) {
      announce("Already decided. Use Change decision to correct it.", false);
      return;
    }
    entry.busy = true;
    entry.parts.problem.hidden = true;
    refresh(entry);
    const wasFocused = entry.article.contains(document.activeElement);
    try {
      const response = await window.lfrConsole.send("POST", entry.data.decision_url, {
        decision: decision, note: entry.parts.note.value.trim(),
      });
      if (!response.ok) {
        throw new Error(await problemOf(response));
      }
      const data = await response.json();
      entry.parts.note.value = "";
      entry.changing = false;
      unmarkFresh(entry);
      const following = wasFocused ? neighbour(entry.article, 1) : null;
      upsert(data, false);
      render();
      announce(DECIDED_TEXT[decision] + ": alert " + data.seq + " from unit " + data.unit +
        ".", false);
      if (wasFocused) {
        (following && following !== entry.article ? following : entry.article).focus();
      }
    } catch (error) {
      entry.parts.problem.textContent = "The decision was not recorded: " + error.message;
      entry.parts.problem.hidden = false;
    } finally {
      entry.busy = false;
      refresh(entry);
    }
  }

  // -- the stream --------------------------------------------------------------------------

  function connect() {
    reconnectTimer = null;
    source = new EventSource(STREAM_URL);
    source.addEventListener("open", function () {
      retryMs = RETRY_MIN_MS;
      setConnection("Live: new alerts appear here as they arrive.");
      if (reloadOnOpen) {
        reloadOnOpen = false;
        reload();
      }
    });
    source.addEventListener("alert", function (event) {
      let notice;
      try {
        notice = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      arrived(notice);
    });
    source.addEventListener("reload", function () { reload(); });
    source.addEventListener("signed-out", function () {
      // The session ended (signed out elsewhere, expired, account disabled): to sign-in.
      source.close();
      source = null;
      window.location.assign("/signin");
    });
    source.addEventListener("error", function () {
      source.close();
      source = null;
      reloadOnOpen = true;
      const wait = retryMs;
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      setConnection("The live feed is lost. Reconnecting in " + Math.round(wait / 1000) +
        " s. Alerts are still stored by the van.");
      // A session that ended answers 401 here: lfrConsole.send then goes to the sign-in page.
      window.lfrConsole.send("GET", LIST_URL + "?limit=1").catch(function () {});
      reconnectTimer = window.setTimeout(connect, wait);
    });
  }

  async function arrived(notice) {
    try {
      const data = await fetchJson(notice.alert_url);
      const isNew = !entries.has(alertKey(data.unit, data.seq));
      upsert(data, isNew);
      render();
      if (isNew) {
        beep();
        announce("New alert: subject " + (data.subject || "unknown") + ", score " +
          score(data.score) + ", unit " + data.unit + ", camera " + (data.camera || "unknown") +
          ".", true);
      }
    } catch (error) {
      reload();
    }
  }

  // -- the keyboard ------------------------------------------------------------------------

  function articles() {
    return Array.from(document.querySelectorAll("article.alert"));
  }

  function neighbour(article, step) {
    const all = articles();
    if (!all.length) {
      return null;
    }
    const at = article ? all.indexOf(article) : -1;
    if (at < 0) {
      return step > 0 ? all[0] : all[all.length - 1];
    }
    return all[Math.min(all.length - 1, Math.max(0, at + step))];
  }

  function entryOf(article) {
    for (const entry of entries.values()) {
      if (entry.article === article) {
        return entry;
      }
    }
    return null;
  }

  function onKey(event) {
    wakeAudio();
    if (event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    const target = event.target;
    const article = target.closest ? target.closest("article.alert") : null;
    const typing = (target.tagName === "INPUT" && target.type !== "checkbox") ||
      target.tagName === "TEXTAREA";
    if (typing) {
      if (event.key === "Escape" && article) {
        event.preventDefault();
        article.focus();
      }
      return;
    }
    const action = ACTIONS.find(function (a) { return a.key === event.key; });
    const entry = article ? entryOf(article) : null;
    if (event.key === "j" || event.key === "k") {
      const next = neighbour(article, event.key === "j" ? 1 : -1);
      if (next) {
        next.focus();
      }
    } else if (action && entry) {
      decideOn(entry, action.decision);
    } else if (event.key === "n" && entry) {
      if (entry.data.decision !== null && !entry.changing) {
        entry.changing = true;
        refresh(entry);
      }
      entry.parts.note.focus();
    } else if (event.key === "s") {
      const sound = byId("alerts-sound");
      sound.checked = !sound.checked;
      announce("Sound cue " + (sound.checked ? "on" : "off") + ".", false);
    } else {
      return;
    }
    event.preventDefault();
  }

  // -- start -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    if (!byId("alerts-waiting")) {
      return;
    }
    baseTitle = document.title;
    document.addEventListener("keydown", onKey);
    document.addEventListener("pointerdown", wakeAudio);
    byId("alerts-waiting-more").addEventListener("click", function () { loadMore(true); });
    byId("alerts-decided-more").addEventListener("click", function () { loadMore(false); });
    window.setInterval(function () {
      const now = vanNow();
      entries.forEach(function (entry) {
        entry.parts.age.textContent = formatAge(now - entry.data.captured_at);
      });
    }, 1000);
    connect();
    reload();
  });

  window.addEventListener("pagehide", function () {
    if (source) {
      source.close();
    }
    if (reconnectTimer) {
      window.clearTimeout(reconnectTimer);
    }
  });
})();
