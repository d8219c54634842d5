// ys1000 pages: auto-refresh of running jobs, copy buttons, and the restore trigger form.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  // Embedded in Airflow's run page (an iframe sandboxed without top navigation or popups),
  // links into Airflow's own UI cannot work: turn them into plain text.
  var framed = false;
  try { framed = window.self !== window.top; } catch (e) { framed = true; }

  ready(function () {
    if (framed) {
      document.documentElement.classList.add("framed");
      document.querySelectorAll("a.af-link").forEach(function (a) {
        a.removeAttribute("href");
        a.title = "open this in Airflow's own pages";
      });
    }

    // job monitor: reload while something runs
    var table = document.querySelector("[data-refresh]");
    if (table) {
      setTimeout(function () { window.location.reload(); }, 1000 * parseInt(table.dataset.refresh, 10));
    }

    // copy buttons
    document.querySelectorAll("[data-copy]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var el = document.getElementById(btn.dataset.copy);
        if (el && navigator.clipboard) navigator.clipboard.writeText(el.textContent);
      });
    });

    var form = document.getElementById("trigger-form");
    if (form) triggerForm(form);
  });

  function readConf(form) {
    var conf = {};
    var errors = [];
    form.querySelectorAll(".field").forEach(function (div) {
      var name = div.dataset.param, widget = div.dataset.widget, nullable = div.dataset.nullable === "True";
      var input = div.querySelector("input, select, textarea");
      var value;
      if (widget === "checkbox") value = input.checked;
      else if (widget === "lines") value = input.value.split(/[\n,]/).map(function (s) { return s.trim(); }).filter(Boolean);
      else if (widget === "json") {
        try { value = input.value.trim() ? JSON.parse(input.value) : {}; }
        catch (e) { errors.push(name + ": not valid JSON (" + e.message + ")"); value = {}; }
      } else {
        value = input.value.trim();
        if (value === "" && nullable) value = null;
      }
      conf[name] = value;
    });
    return {conf: conf, errors: errors};
  }

  function triggerForm(form) {
    var preview = document.getElementById("conf-preview");
    var result = document.getElementById("trigger-result");
    function update() { preview.textContent = JSON.stringify(readConf(form).conf, null, 2); }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var read = readConf(form);
      result.hidden = false;
      if (read.errors.length) { result.textContent = read.errors.join("; "); result.className = "error"; return; }
      var button = document.getElementById("trigger-submit");
      button.disabled = true;
      result.className = "note";
      result.textContent = "Triggering…";
      fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: JSON.stringify({logical_date: null, conf: read.conf, note: "restore of " + (read.conf.backup || "?") + " from the ys1000 catalog"})
      }).then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) { return {ok: resp.ok, status: resp.status, body: body}; });
      }).then(function (r) {
        if (!r.ok) {
          var detail = r.body && r.body.detail ? (typeof r.body.detail === "string" ? r.body.detail : JSON.stringify(r.body.detail)) : "";
          result.className = "error";
          result.textContent = "Airflow refused the run (HTTP " + r.status + ")" + (detail ? ": " + detail : "");
          button.disabled = false;
          return;
        }
        var url = form.dataset.runUrl.replace("__RUN_ID__", encodeURIComponent(r.body.dag_run_id));
        result.innerHTML = "";
        result.appendChild(document.createTextNode("Run created: "));
        var a = document.createElement("a");
        a.id = "triggered-run"; a.textContent = r.body.dag_run_id;
        if (!framed) a.href = url;
        result.appendChild(a);
        if (!framed) setTimeout(function () { window.location.href = url; }, 1500);
      }).catch(function (e) {
        result.className = "error";
        result.textContent = "Request failed: " + e;
        button.disabled = false;
      });
    });
  }
})();
