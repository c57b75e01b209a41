/* nostr-swarm dashboard: reads /session, logs in if it must, then follows /events (server-sent
   events, JSON batches) and draws what they say. Nothing is built from HTML strings: every value
   from the server goes through textContent or an attribute. */
(function () {
  "use strict";

  var MAX_POINTS = 720;
  var MAX_CHANGES = 25;
  var STATES = {
    asked: ["\u25CB", "asked"],
    processing: ["\u25D4", "processing"],
    answered: ["\u25CF", "answered"],
    error: ["\u2715", "error"],
    timed_out: ["\u231B", "timed out"],
    not_needed: ["\u2013", "not needed"],
    agreed: ["\u2713", "agreed"],
    dissented: ["\u2260", "dissented"],
    paid: ["\u26A1", "paid"]
  };
  var BREAKER = { closed: "\u2713 closed", half_open: "\u25D1 half-open", open: "\u2715 open" };

  var session = null;
  var source = null;
  var retryTimer = null;
  var panels = [];
  var role = "customer";  // "provider": one node's own jobs, not a customer's quorums
  var jobs = new Map();
  var jobEls = new Map();
  var points = [];
  var charts = {};
  var bucketS = 5;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "class") { e.className = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
      });
    }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function short(key) {
    key = String(key || "");
    return key.length > 12 ? key.slice(0, 8) + "\u2026" : key;
  }

  function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }

  function sats(msats) {
    var m = Number(msats || 0);
    if (m % 1000 === 0) { return fmtInt(m / 1000); }
    return (m / 1000).toLocaleString("en-US", { maximumFractionDigits: 3 });
  }

  function satsText(msats) {
    var s = sats(msats);
    return s + (s === "1" ? " sat" : " sats");
  }

  function duration(ms) {
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s";
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function setText(id, value) {
    var node = $(id);
    if (node && node.textContent !== String(value)) {
      node.textContent = String(value);
      return true;
    }
    return false;
  }

  function flash(node) {
    node.classList.remove("flash");
    void node.offsetWidth;  // restart the animation
    node.classList.add("flash");
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  // --- connection status ------------------------------------------------------------------

  function status(text, kind) {
    var c = $("conn");
    c.classList.remove("live", "down");
    if (kind) { c.classList.add(kind); }
    setText("conn-text", text);
  }

  // --- session and login ------------------------------------------------------------------

  function api(path, options) {
    options = options || {};
    options.credentials = "same-origin";
    options.headers = options.headers || {};
    options.headers.Accept = "application/json";
    return fetch(path, options).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        return { ok: r.ok, status: r.status, body: body };
      });
    });
  }

  function errorText(res, fallback) {
    var e = res.body && res.body.error;
    return (e && e.message) ? e.message : fallback;
  }

  function showOnly(which) {
    $("login").hidden = which !== "login";
    $("closed").hidden = which !== "closed";
    $("dash").hidden = which !== "dash";
    $("nav").hidden = which !== "dash";
  }

  function start() {
    return api("session").then(function (res) {
      if (!res.ok) {
        status("Unavailable", "down");
        $("closed-why").textContent = errorText(res, "The dashboard did not answer.");
        showOnly("closed");
        return;
      }
      session = res.body;
      if (session.title) {
        setText("title", session.title);
        document.title = session.title + " \u2013 dashboard";
      }
      $("logout").hidden = session.via !== "session";
      $("login-open").hidden = !(session.read && !session.act && session.login);
      if (!session.read) {
        stop();
        if (session.login) {
          status("Logged out", null);
          showOnly("login");
          $("login-key").focus();
        } else {
          status("Closed", "down");
          $("closed-why").textContent =
            "This dashboard needs the gateway's admin key, and the gateway has none configured " +
            "(admin: {key_env: \u2026} in its config file).";
          showOnly("closed");
        }
        return;
      }
      showOnly("dash");
      $("login").hidden = true;
      var canAsk = session.act && session.actions.some(function (a) { return a.name === "ask"; });
      $("ask").hidden = !canAsk;
      connect();
    }).catch(function () {
      status("Offline", "down");
      scheduleRetry();
    });
  }

  function scheduleRetry() {
    if (retryTimer === null) {
      retryTimer = setTimeout(function () { retryTimer = null; start(); }, 5000);
    }
  }

  function stop() {
    if (source) { source.close(); source = null; }
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var input = $("login-key");
    var key = input.value;
    var err = $("login-error");
    if (!key.trim()) {
      err.textContent = "Enter the admin key.";
      input.focus();
      return;
    }
    err.textContent = "";
    var button = ev.target.querySelector("button");
    button.disabled = true;
    api("login", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ key: key }).toString()
    }).then(function (res) {
      button.disabled = false;
      if (!res.ok) {
        err.textContent = errorText(res, "Logging in failed.");
        input.select();
        return;
      }
      input.value = "";
      start().then(function () { $("main").focus(); });
    }).catch(function () {
      button.disabled = false;
      err.textContent = "The dashboard did not answer.";
    });
  });

  $("login-open").addEventListener("click", function () {
    $("login").hidden = false;
    $("login-key").focus();
  });

  $("logout").addEventListener("click", function () {
    api("logout", { method: "POST", headers: { "X-CSRF-Token": session && session.csrf || "" } })
      .then(function () { stop(); start(); });
  });

  // --- the event stream ----------------------------------------------------------------

  function connect() {
    stop();
    status("Connecting\u2026", null);
    source = new EventSource("events");
    source.onopen = function () { status("Live", "live"); };
    source.onmessage = function (ev) {
      var batch;
      try { batch = JSON.parse(ev.data); } catch (e) { return; }
      batch.forEach(apply);
    };
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (logged out, too many viewers): ask again what this browser may do.
        stop();
        status("Disconnected", "down");
        scheduleRetry();
      } else {
        status("Reconnecting\u2026", "down");
      }
    };
  }

  function apply(msg) {
    switch (msg.type) {
      case "snapshot": return snapshot(msg);
      case "job": return upsertJob(msg.job, true);
      case "job_removed": return removeJob(msg.id);
      case "cards": return renderCards(msg.cards);
      case "points": return addPoints(msg.points, false);
      case "series": return addPoints(msg.points, true);
      case "traffic": return renderTraffic(msg.traffic);
      case "errors": return renderErrors(msg.errors);
      case "breakers": return renderBreakers(msg.breakers);
      case "keys": return renderKeys(msg.keys);
      case "reputation": return renderReputation(msg.reputation);
      case "earnings": return renderEarnings(msg.earnings);
      default: return undefined;
    }
  }

  function snapshot(s) {
    panels = s.panels || [];
    role = s.role || "customer";
    bucketS = s.bucket_s || 5;
    document.querySelectorAll(".bucket").forEach(function (n) { n.textContent = bucketS + " s"; });
    applyRole();
    document.querySelectorAll("[data-panel]").forEach(function (n) {
      n.hidden = panels.indexOf(n.getAttribute("data-panel")) < 0;
    });
    document.querySelectorAll("[data-roles]").forEach(function (n) {
      if (n.getAttribute("data-roles").split(" ").indexOf(role) < 0) { n.hidden = true; }
    });
    balance();
    buildNav();
    jobs.clear();
    jobEls.forEach(function (node) { node.remove(); });
    jobEls.clear();
    (s.jobs || []).slice().reverse().forEach(function (j) { upsertJob(j, false); });
    renderCards(s.cards);
    ensureCharts();
    addPoints(s.points || [], true);
    renderTraffic(s.traffic || []);
    renderErrors(s.errors || []);
    renderBreakers(s.breakers || []);
    renderKeys(s.keys || []);
    renderReputation(s.reputation || []);
    renderEarnings(s.earnings);
  }

  function applyRole() {
    // Words that differ on a provider's page: kept in data-provider-text.
    document.querySelectorAll("[data-provider-text]").forEach(function (n) {
      if (n.dataset.customerText === undefined) { n.dataset.customerText = n.textContent; }
      n.textContent = role === "provider" ? n.dataset.providerText : n.dataset.customerText;
    });
  }

  function canAct(name) {
    return !!(session && session.act && session.actions.some(function (a) { return a.name === name; }));
  }

  function balance() {
    // Half-width panels go in pairs; one left alone in its run takes the whole row.
    var run = [];
    function close() {
      if (run.length % 2 === 1) { run[run.length - 1].classList.add("alone"); }
      run = [];
    }
    document.querySelectorAll("#dash > section.panel").forEach(function (sec) {
      sec.classList.remove("alone");
      if (sec.hidden || sec.id === "ask") { return; }
      if (sec.classList.contains("wide")) { close(); } else { run.push(sec); }
    });
    close();
    // The summary shows the cards of the panels shown, or nothing.
    var cards = document.querySelectorAll(".summary .card");
    var shown = Array.prototype.some.call(cards, function (c) { return !c.hidden; });
    document.querySelector(".summary").hidden = !shown;
  }

  function buildNav() {
    var list = $("nav-list");
    clear(list);
    document.querySelectorAll("#dash > section.panel").forEach(function (sec) {
      if (sec.hidden || !sec.id) { return; }
      var h = sec.querySelector("h2");
      var li = el("li");
      li.appendChild(el("a", { href: "#" + sec.id }, h ? h.textContent : sec.id));
      list.appendChild(li);
    });
  }

  // --- jobs --------------------------------------------------------------------------------

  function announce(text) {
    var log = $("changes");
    var li = el("li");
    li.appendChild(el("time", null, clock(Date.now() / 1000)));
    li.appendChild(document.createTextNode(" " + text));
    log.insertBefore(li, log.firstChild);
    while (log.children.length > MAX_CHANGES) { log.removeChild(log.lastChild); }
  }

  function describeChanges(old, job) {
    var label = "Job " + short(job.id);
    if (!old) {
      var model = job.model ? " (" + job.model + ")" : "";
      if (role === "provider") {
        announce(label + " taken" + model);
      } else {
        announce(label + " asked" + model +
          (job.providers.length ? " of " + job.providers.length + " providers" : ""));
      }
    }
    var before = {};
    if (old) { old.providers.forEach(function (p) { before[p.key] = p.state; }); }
    job.providers.forEach(function (p) {
      if (before[p.key] !== p.state && (old || p.state !== "asked")) {
        var who = role === "provider" ? "" : " provider " + short(p.key);
        announce(label + ":" + who + " " + STATES[p.state][1]);
      }
    });
    // A provider's own state already says how its job ended (answered, error).
    if (role !== "provider" && job.outcome && (!old || old.outcome !== job.outcome)) {
      announce(label + ": " + (job.outcome === "reached" ? "quorum reached" : "no quorum"));
    }
  }

  function outcomeText(job) {
    var provider = role === "provider";
    if (job.outcome === "reached") {
      var t = provider ? "\u2713 Answered" : "\u2713 Quorum reached";
      if (job.elapsed_ms !== null) { t += " in " + duration(job.elapsed_ms); }
      return t;
    }
    if (job.outcome === "failed") { return provider ? "\u2715 Not answered" : "\u2715 No quorum"; }
    return provider ? "\u25D4 Working on it" : "\u25D4 Waiting for a quorum";
  }

  function renderJob(job) {
    var cls = job.outcome || "running";
    var li = el("li", { "class": "job " + cls, "data-job": job.id, "data-outcome": cls });
    var head = el("div", { "class": "job-head" });
    var h = el("h3", { title: job.id }, "Job " + short(job.id));
    head.appendChild(h);
    head.appendChild(el("span", { "class": "outcome " + cls }, outcomeText(job)));
    var meta = [];
    if (job.model) { meta.push(job.model); }
    if (job.quorum) { meta.push("quorum " + job.quorum); }
    meta.push("asked " + clock(job.asked_at));
    if (job.paid_msats) { meta.push(satsText(job.paid_msats) + " paid"); }
    head.appendChild(el("span", { "class": "job-meta" }, meta.join(" \u00B7 ")));
    li.appendChild(head);
    if (job.prompt) { li.appendChild(el("p", { "class": "job-prompt" }, "Q: " + job.prompt)); }
    var chips = el("ul", { "class": "chips", "aria-label": "Providers of job " + short(job.id) });
    job.providers.forEach(function (p) {
      var st = STATES[p.state] || ["?", p.state];
      var chip = el("li", {
        "class": "chip s-" + p.state, "data-provider": p.key, "data-state": p.state,
        title: p.key + (p.detail ? ": " + p.detail : "")
      });
      chip.appendChild(el("span", { "class": "sym", "aria-hidden": "true" }, st[0]));
      chip.appendChild(el("span", { "class": "who" }, short(p.key)));
      chip.appendChild(el("span", { "class": "st" }, st[1]));
      chips.appendChild(chip);
    });
    if (job.hidden_providers) {
      chips.appendChild(el("li", { "class": "chip" }, "+" + job.hidden_providers + " more"));
    }
    li.appendChild(chips);
    if (job.text) { li.appendChild(el("p", { "class": "job-answer" }, job.text)); }
    return li;
  }

  function upsertJob(job, live) {
    var old = jobs.get(job.id);
    if (live) { describeChanges(old, job); }
    jobs.set(job.id, job);
    var node = renderJob(job);
    var prev = jobEls.get(job.id);
    var list = $("jobs");
    if (prev) {
      list.replaceChild(node, prev);
    } else {
      list.insertBefore(node, list.firstChild);
    }
    jobEls.set(job.id, node);
    $("jobs-empty").hidden = jobs.size > 0;
  }

  function removeJob(id) {
    var node = jobEls.get(id);
    if (node) { node.remove(); }
    jobEls.delete(id);
    jobs.delete(id);
    $("jobs-empty").hidden = jobs.size > 0;
  }

  // --- figures and tables ---------------------------------------------------------------

  function renderCards(c) {
    if (!c) { return; }
    setText("card-in-flight", fmtInt(c.in_flight));
    setText("card-reached", fmtInt(c.reached));
    setText("card-failed", fmtInt(c.failed));
    setText("card-sats-in", sats(c.msats_in));
    setText("card-sats-out", sats(c.msats_out));
  }

  function renderEarnings(e) {
    if (!e) { return; }
    setText("earn-jobs", fmtInt(e.jobs_done));
    setText("earn-billed", satsText(e.billed_msats));
    if (setText("earn-paid", satsText(e.paid_msats))) { flash($("earn-paid")); }
  }

  function fillTable(id, rows, columns, emptyText) {
    var body = $(id);
    clear(body);
    if (!rows.length) {
      var tr = el("tr");
      tr.appendChild(el("td", { "class": "none", colspan: String(columns) }, emptyText));
      body.appendChild(tr);
      return null;
    }
    return body;
  }

  function cell(tr, text, cls, title) {
    var td = el("td", cls ? { "class": cls } : null, text);
    if (title) { td.title = title; }
    tr.appendChild(td);
    return td;
  }

  function renderTraffic(rows) {
    var body = fillTable("traffic-body", rows, role === "provider" ? 4 : 5, "No requests yet.");
    if (!body) { return; }
    rows.forEach(function (r) {
      var tr = el("tr");
      cell(tr, r.backend);
      cell(tr, r.model || "\u2013");
      cell(tr, fmtInt(r.requests), "num");
      cell(tr, r.errors === null ? "\u2013" : fmtInt(r.errors), "num");
      if (role !== "provider") { cell(tr, sats(r.msats), "num"); }
      body.appendChild(tr);
    });
  }

  function renderErrors(rows) {
    var body = fillTable("errors-body", rows, 2, "No errors.");
    if (!body) { return; }
    rows.forEach(function (r) {
      var tr = el("tr");
      cell(tr, r.error);
      cell(tr, fmtInt(r.count), "num");
      body.appendChild(tr);
    });
  }

  function renderBreakers(rows) {
    var body = fillTable("breakers-body", rows, 5, "No backends reported yet.");
    if (!body) { return; }
    rows.forEach(function (r) {
      var tr = el("tr");
      cell(tr, r.backend);
      cell(tr, BREAKER[r.state] || r.state, "state-" + r.state);
      cell(tr, fmtInt(r.in_flight), "num");
      cell(tr, fmtInt(r.failures), "num");
      cell(tr, r.latency_ms ? Math.round(r.latency_ms) + " ms" : "\u2013", "num");
      body.appendChild(tr);
    });
  }

  function renderKeys(rows) {
    var body = fillTable("keys-body", rows, 3, "No budget accounts.");
    if (!body) { return; }
    var revoke = canAct("revoke_key");
    rows.forEach(function (r) {
      var tr = el("tr");
      var who = cell(tr, r.account);
      if (revoke && r.key_name) {
        who.appendChild(document.createTextNode(" "));
        who.appendChild(el("button", {
          type: "button", "class": "small danger", "data-revoke": r.key_name,
          "aria-label": "Revoke the API key " + r.key_name
        }, "Revoke"));
      }
      var td = el("td", { "class": "spend" });
      var text = satsText(r.spent_msats);
      if (r.budget_msats !== null && r.budget_msats !== undefined) {
        var meter = el("meter", {
          min: "0", max: String(Math.max(1, r.budget_msats)), value: String(r.spent_msats),
          high: String(0.8 * r.budget_msats), optimum: "0",
          "aria-label": "Spend of " + r.account + " against its budget"
        });
        td.appendChild(meter);
        var pct = r.budget_msats ? Math.round(100 * r.spent_msats / r.budget_msats) : 100;
        text = sats(r.spent_msats) + " of " + satsText(r.budget_msats) + " (" + pct + "%)";
      } else {
        text += " (no budget)";
      }
      if (r.reserved_msats) { text += ", " + satsText(r.reserved_msats) + " held"; }
      if (r.budget_usd !== null && r.budget_usd !== undefined) {
        text += "; $" + r.spent_usd.toFixed(4) + " of $" + r.budget_usd.toFixed(2);
      }
      td.appendChild(document.createTextNode(text));
      tr.appendChild(td);
      cell(tr, fmtInt(r.requests), "num");
      body.appendChild(tr);
    });
  }

  function renderReputation(rows) {
    var body = fillTable("reputation-body", rows, 8, "No providers rated yet.");
    if (!body) { return; }
    rows.forEach(function (r) {
      var tr = el("tr");
      cell(tr, short(r.provider), "key", r.provider);
      cell(tr, r.score.toFixed(3), "num");
      cell(tr, fmtInt(r.jobs), "num");
      cell(tr, r.agreed.toFixed(1), "num");
      cell(tr, r.dissented.toFixed(1), "num");
      cell(tr, r.timeouts.toFixed(1), "num");
      cell(tr, r.latency_ms === null ? "\u2013" : Math.round(r.latency_ms) + " ms", "num");
      cell(tr, sats(r.paid_msats), "num");
      body.appendChild(tr);
    });
  }

  // --- charts --------------------------------------------------------------------------------

  function abs(u, v) { return v === null || v === undefined ? "--" : String(Math.abs(v)); }

  var CHARTS = {
    money: {
      el: "chart-money", caption: "money-caption", unit: "sats",
      // Sats in above the line, sats out below it: the two never hide each other.
      axisValues: function (u, ticks) { return ticks.map(function (v) { return Math.abs(v); }); },
      series: [
        { key: "sats_in", label: "Sats in", stroke: "#146c2e", fill: "rgba(20,108,46,0.55)", bars: true },
        { key: "sats_out", label: "Sats out", stroke: "#b45309", fill: "rgba(180,83,9,0.45)", bars: true, negate: true, roles: ["customer"] }
      ]
    },
    latency: {
      el: "chart-latency", caption: "latency-caption", unit: "ms",
      series: [
        { key: "job_p50", label: "quorum p50", provider: "job p50", stroke: "#0a58ca", group: "jobs" },
        { key: "job_p90", label: "quorum p90", provider: "job p90", stroke: "#0a58ca", dash: [6, 4], group: "jobs" },
        { key: "job_p99", label: "quorum p99", provider: "job p99", stroke: "#0a58ca", dash: [2, 3], group: "jobs" },
        { key: "req_p50", label: "request p50", provider: "model p50", stroke: "#6f42c1", group: "traffic" },
        { key: "req_p90", label: "request p90", provider: "model p90", stroke: "#6f42c1", dash: [6, 4], group: "traffic" },
        { key: "req_p99", label: "request p99", provider: "model p99", stroke: "#6f42c1", dash: [2, 3], group: "traffic" }
      ]
    },
    traffic: {
      el: "chart-requests", caption: "requests-caption", unit: "requests",
      series: [
        { key: "requests", label: "Requests", provider: "Runs", stroke: "#0a58ca", fill: "rgba(10,88,202,0.45)", bars: true },
        { key: "errors", label: "Errors", stroke: "#b42318", dash: [6, 4] }
      ]
    }
  };

  function chartWidth(node) {
    var w = node.parentNode.clientWidth || node.clientWidth;
    return Math.max(240, Math.floor(w));
  }

  function chartHeight() { return window.innerWidth < 760 ? 180 : 220; }

  function seriesFor(spec) {
    // A provider takes no sats out. Latency: the quorum percentiles where jobs are shown, the
    // request ones where traffic is.
    var all = spec.series.filter(function (s) { return !s.roles || s.roles.indexOf(role) >= 0; });
    var groups = all.filter(function (s) { return s.group && panels.indexOf(s.group) >= 0; });
    if (!groups.length) { return all; }
    return all.filter(function (s) { return !s.group || panels.indexOf(s.group) >= 0; });
  }

  function timeRange(u, min, max) {
    // At least twenty buckets wide, so a few first points do not stretch over the whole chart.
    if (min === null || max === null) { var now = Date.now() / 1000; return [now - 20 * bucketS, now]; }
    var span = Math.max(20 * bucketS, max - min);
    return [max - span, max + bucketS / 2];
  }

  function ensureCharts() {
    if (typeof uPlot === "undefined") { return; }
    Object.keys(CHARTS).forEach(function (panel) {
      var spec = CHARTS[panel];
      if (charts[panel] || panels.indexOf(panel) < 0) { return; }
      var node = $(spec.el);
      var chosen = seriesFor(spec);
      var series = [{}].concat(chosen.map(function (s) {
        var out = {
          label: (role === "provider" && s.provider) || s.label,
          stroke: s.stroke, fill: s.fill, dash: s.dash, width: 2,
          spanGaps: false, points: { show: !s.bars, size: 5 }, value: abs
        };
        if (s.bars) {
          out.width = 1;
          out.paths = uPlot.paths.bars({ size: [0.7, 48] });
        }
        return out;
      }));
      var axis = { stroke: "#545d68", grid: { stroke: "#e6e9ed", width: 1 }, ticks: { stroke: "#d0d7de" } };
      var yAxis = Object.assign({}, axis, { size: 56, label: spec.unit });
      if (spec.axisValues) { yAxis.values = spec.axisValues; }
      var plot = new uPlot({
        width: chartWidth(node),
        height: chartHeight(),
        scales: { x: { time: true, range: timeRange } },
        axes: [Object.assign({}, axis, { space: 90 }), yAxis],
        series: series,
        cursor: { drag: { x: false, y: false } },
        legend: { live: true }
      }, emptyData(chosen.length), node);
      charts[panel] = { plot: plot, series: chosen, spec: spec, node: node };
    });
  }

  function emptyData(n) {
    var d = [[]];
    for (var i = 0; i < n; i++) { d.push([]); }
    return d;
  }

  function addPoints(list, replace) {
    if (replace) { points = []; }
    points = points.concat(list || []);
    if (points.length > MAX_POINTS) { points = points.slice(points.length - MAX_POINTS); }
    drawCharts();
  }

  function drawCharts() {
    Object.keys(charts).forEach(function (panel) {
      var c = charts[panel];
      // One point alone would stretch the time axis over years: an empty one goes before it.
      var shown = points.length === 1 ? [{ t: points[0].t - bucketS }].concat(points) : points;
      var data = [shown.map(function (p) { return p.t; })];
      c.series.forEach(function (s) {
        data.push(shown.map(function (p) {
          var v = p[s.key];
          if (v === undefined || v === null) { return null; }
          return s.negate ? -v : v;
        }));
      });
      c.plot.setData(data);
      caption(c, data);
    });
  }

  function caption(c, data) {
    var cap = $(c.spec.caption);
    var last = data[0].length - 1;
    if (last < 0) { cap.textContent = "No data yet."; return; }
    var parts = c.series.map(function (s, i) {
      var v = data[i + 1][last];
      var label = (role === "provider" && s.provider) || s.label;
      return label + " " + (v === null ? "no data" : Math.abs(v) + " " + c.spec.unit);
    });
    cap.textContent = "Latest " + bucketS + " s, at " + clock(data[0][last]) + ": " + parts.join(", ") + ".";
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(charts).forEach(function (panel) {
        var c = charts[panel];
        c.plot.setSize({ width: chartWidth(c.node), height: chartHeight() });
      });
    }, 150);
  });

  // --- revoking a key (the gateway) ----------------------------------------------------------

  $("keys-body").addEventListener("click", function (ev) {
    var button = ev.target.closest("button[data-revoke]");
    if (!button) { return; }
    var name = button.getAttribute("data-revoke");
    if (!window.confirm("Revoke the API key \u201C" + name + "\u201D? It stops working at once; its spend stays on record.")) {
      return;
    }
    var statusEl = $("keys-status");
    button.disabled = true;
    statusEl.textContent = "Revoking " + name + "\u2026";
    api("actions/revoke_key", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session && session.csrf || "" },
      body: JSON.stringify({ name: name })
    }).then(function (res) {
      button.disabled = false;
      statusEl.textContent = res.ok ? "Key " + name + " revoked." :
        errorText(res, "The key could not be revoked.");
    }).catch(function () {
      button.disabled = false;
      statusEl.textContent = "The dashboard did not answer.";
    });
  });

  // --- asking (the demo) -----------------------------------------------------------------------

  $("ask-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var prompt = $("ask-prompt").value.trim();
    var statusEl = $("ask-status");
    if (!prompt) { statusEl.textContent = "Type a question first."; return; }
    var button = $("ask-button");
    button.disabled = true;
    $("ask-answer").hidden = true;
    statusEl.textContent = "Asking the swarm\u2026";
    api("actions/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session && session.csrf || "" },
      body: JSON.stringify({ prompt: prompt })
    }).then(function (res) {
      button.disabled = false;
      if (!res.ok) {
        statusEl.textContent = errorText(res, "The question could not be asked.");
        return;
      }
      var r = res.body;
      if (r.reached) {
        statusEl.textContent = "Quorum reached: " + (r.agreeing || []).length + " providers agreed.";
        $("ask-answer-text").textContent = r.text;
        $("ask-answer").hidden = false;
      } else {
        statusEl.textContent = "No quorum: " + (r.reason || "the providers did not agree in time") + ".";
      }
    }).catch(function () {
      button.disabled = false;
      statusEl.textContent = "The dashboard did not answer.";
    });
  });

  start();
})();
