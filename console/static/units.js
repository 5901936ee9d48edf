// The Units page's refresh: every 5 s it asks /units.json for the same rows the server drew
// and redraws the table's body. Every text goes in with textContent (never as HTML), so a unit
// id or a refusal reason can never become markup. One request at a time: the next is planned
// only once the last one ended, so a slow van never piles requests up. Without this script the
// page still shows the rows as they were when it loaded.
"use strict";

(function () {
  const PERIOD_MS = 5000;

  function lines(cell, texts) {
    texts.forEach(function (text, index) {
      if (index > 0) {
        cell.appendChild(document.createElement("br"));
      }
      cell.appendChild(document.createTextNode(text));
    });
  }

  function row(unit, columns) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.setAttribute("scope", "row");
    th.textContent = unit.unit;
    tr.appendChild(th);
    columns.forEach(function (column) {
      const td = document.createElement("td");
      if (column.key === "alarms" && unit.alarms.length > 0) {
        const list = document.createElement("ul");
        list.className = "alarms";
        unit.alarms.forEach(function (alarm) {
          const item = document.createElement("li");
          const strong = document.createElement("strong");
          strong.textContent = alarm.text;
          item.appendChild(strong);
          list.appendChild(item);
        });
        td.appendChild(list);
      } else {
        lines(td, unit.cells[column.key] || []);
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function draw(data) {
    const body = document.getElementById("units-rows");
    if (!body) {
      return;
    }
    const rows = document.createDocumentFragment();
    data.units.forEach(function (unit) {
      rows.appendChild(row(unit, data.columns));
    });
    if (data.units.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.setAttribute("colspan", String(data.columns.length + 1));
      td.textContent = "No unit is enrolled and none has been heard from.";
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    const summary = document.getElementById("units-summary");
    if (summary && summary.textContent !== data.summary) {
      summary.textContent = data.summary;  // a live region: read out only when it changes
    }
    const updated = document.getElementById("units-updated");
    if (updated) {
      updated.textContent = data.updated;
    }
  }

  function showProblem(text) {
    const updated = document.getElementById("units-updated");
    if (updated) {
      updated.textContent = text;
    }
  }

  async function refresh() {
    try {
      const response = await window.lfrConsole.send("GET", "/units.json");
      if (response.ok) {
        draw(await response.json());
      } else {
        showProblem("not updated: the van answered " + response.status + "; retrying");
      }
    } catch (error) {
      showProblem("not updated: the van could not be reached; retrying");
    }
    window.setTimeout(refresh, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("units-rows")) {
      window.setTimeout(refresh, PERIOD_MS);
    }
  });
})();
