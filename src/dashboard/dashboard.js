// The flightbay dashboard: polls /api/dashboard every two seconds and renders it. Plain JS, no build step.
//
// Every value from the server reaches the page through textContent or an attribute, never as HTML: flight names
// are identifiers, but SQL text in lineage parameters is whatever a client sent.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "flightbay.token";

const $ = (selector) => document.querySelector(selector);

let authRequired = false;
let timer = null;

// ---------- formatting ----------

const integer = (n) => Number(n).toLocaleString("en-US");

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function percent(part, whole) {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "–";
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

function duration(seconds) {
  if (seconds < 1) return `${(seconds * 1000).toFixed(1)} ms`;
  return `${seconds.toFixed(2)} s`;
}

function timeOfDay(rfc3339) {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleTimeString("en-GB");
}

// ---------- DOM helpers ----------

/** An element with text and attributes (values are set as properties/attributes, never parsed as HTML). */
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  return node;
}

function setText(selector, text) {
  $(selector).textContent = text;
}

function flightLabel(flight) {
  return flight.name ? `#${flight.id} ${flight.namespace}.${flight.name}` : `#${flight.id}`;
}

/** The op's parameters in one short line (SQL text, a take's indices, an upload's mode). */
function paramsText(lineage) {
  const params = lineage.params;
  if (params === null || params === undefined) return "";
  if (typeof params === "string") return params;
  if (typeof params.sql === "string") return params.sql;
  if (typeof params.query === "string") return params.query;
  return JSON.stringify(params);
}

// ---------- token ----------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showStatus(state, message) {
  document.body.dataset.state = state;
  const status = $("#status");
  status.textContent = message;
  status.className = state;
}

/** Removes every flight and counter from the page (after a token is refused or forgotten). */
function clearData() {
  $("#content").hidden = true;
  $("#flights tbody").replaceChildren();
  $("#lineage").replaceChildren();
  $("#recent tbody").replaceChildren();
  setText("#who", "");
  for (const dd of document.querySelectorAll("#counters dd")) dd.textContent = "";
}

// ---------- rendering ----------

function renderGauge(selector, used, limit, extra) {
  const gauge = $(selector);
  const fill = gauge.querySelector(".fill");
  gauge.dataset.bytes = String(used);
  gauge.dataset.limit = limit === null ? "" : String(limit);
  if (limit === null) {
    fill.style.width = "0%";
    gauge.querySelector(".gauge-text").textContent = `${bytes(used)} (no limit)`;
    gauge.querySelector(".gauge-bytes").textContent = `${integer(used)} bytes`;
  } else {
    const share = limit > 0 ? Math.min(1, used / limit) : 0;
    fill.style.width = `${(share * 100).toFixed(2)}%`;
    fill.classList.toggle("high", share >= 0.8);
    gauge.querySelector(".gauge-text").textContent = `${bytes(used)} of ${bytes(limit)} (${percent(used, limit)})`;
    gauge.querySelector(".gauge-bytes").textContent = `${integer(used)} of ${integer(limit)} bytes${extra || ""}`;
  }
}

function renderServer(stats) {
  const store = stats.store;
  const peak = `, peak ${integer(store.peak_resident_bytes)}`;
  renderGauge("#memory-gauge", store.resident_bytes, store.memory_limit, peak);
  const mark = $("#memory-gauge .mark");
  mark.style.left = `${store.memory_limit > 0 ? (100 * store.high_water_bytes) / store.memory_limit : 0}%`;
  renderGauge("#disk-gauge", store.spilled_bytes, store.disk_limit);

  const cache = stats.engine.cache;
  const answered = cache.hits + cache.misses;
  const rate = $("#hit-rate");
  rate.textContent = answered > 0 ? percent(cache.hits, answered) : "no requests yet";
  rate.dataset.hits = String(cache.hits);
  rate.dataset.misses = String(cache.misses);
  setText(
    "#cache-counts",
    `hits ${integer(cache.hits)} · misses ${integer(cache.misses)} · computed ${integer(cache.computations)} · ` +
      `entries ${integer(cache.entries)}`,
  );

  setText("#stat-flights", integer(store.flights));
  setText("#stat-flights-in-memory", integer(store.flights_in_memory));
  setText("#stat-flights-spilled", integer(store.flights_spilled));
  setText("#stat-flights-pinned", integer(store.flights_pinned));
  setText("#stat-spills", integer(store.spills));
  setText("#stat-reloads", integer(store.reloads));
  const e = store.evictions;
  setText("#stat-evictions", integer(e.memory + e.forced + e.too_large + e.disk_limit_drops));
  setText("#stat-queries", `${integer(stats.compute.running)} / ${integer(stats.compute.queued)}`);
}

function renderFlights(flights) {
  const rows = flights
    .slice()
    .reverse()
    .map((f) => {
      const tr = el("tr", null, { id: `flight-${f.id}`, "data-id": f.id });
      const idCell = el("td", null, { class: "num" });
      idCell.append(el("a", `#${f.id}`, { href: `#lineage-${f.id}`, title: "show its lineage" }));
      const where = f.state === "memory" ? "memory" : "disk";
      tr.append(
        idCell,
        el("td", f.name ?? "–", { "data-col": "name", title: f.names.join(", ") || null }),
        el("td", f.namespace ?? "–", { "data-col": "namespace" }),
        el("td", integer(f.rows), { class: "num", "data-col": "rows", "data-value": f.rows }),
        el("td", bytes(f.bytes), {
          class: "num",
          "data-col": "bytes",
          "data-value": f.bytes,
          title: `${integer(f.bytes)} bytes`,
        }),
        el("td", where, { "data-col": "state", class: `state ${where}` }),
        el("td", f.pinned ? "pinned" : "", { "data-col": "pinned" }),
        el("td", age(f.age_seconds), { class: "num", "data-col": "age", title: f.created_at }),
        el("td", integer(f.hits), { class: "num", "data-col": "hits", "data-value": f.hits }),
        el("td", f.lineage.op, { "data-col": "op" }),
      );
      return tr;
    });
  $("#flights tbody").replaceChildren(...rows);
  $("#no-flights").hidden = flights.length > 0;
  setText("#flight-count", `(${flights.length})`);
}

/** One card per flight: its inputs → the op → the flight, and the flights made from it. */
function renderLineage(flights) {
  const byId = new Map(flights.map((f) => [f.id, f]));
  const children = new Map();
  for (const f of flights) {
    for (const input of f.lineage.inputs) {
      if (!children.has(input.id)) children.set(input.id, []);
      children.get(input.id).push(f);
    }
  }
  const link = (flight, cls) =>
    el("a", flightLabel(flight), { class: `node ${cls}`, href: `#lineage-${flight.id}`, "data-id": flight.id });

  const cards = flights
    .slice()
    .reverse()
    .map((f) => {
      const card = el("div", null, { class: "lineage", id: `lineage-${f.id}`, "data-id": f.id });
      const parents = el("div", null, { class: "column parents" });
      for (const input of f.lineage.inputs) {
        const parent = byId.get(input.id);
        if (parent) {
          parents.append(link(parent, "parent"));
        } else {
          const what = input.dropped ? "dropped" : "not visible";
          parents.append(el("span", `#${input.id} (${what})`, { class: "node parent missing", "data-id": input.id }));
        }
      }
      const params = paramsText(f.lineage);
      const op = el("div", f.lineage.op, { class: "op", title: params || null });
      if (params) op.append(el("span", params, { class: "params" }));
      const self = el("div", flightLabel(f), { class: "node child", "data-id": f.id });
      card.append(parents);
      if (f.lineage.inputs.length > 0) card.append(el("span", "→", { class: "arrow" }));
      card.append(op, el("span", "→", { class: "arrow" }), self);
      const usedBy = children.get(f.id) || [];
      if (usedBy.length > 0) {
        const column = el("div", null, { class: "column used-by" });
        column.append(el("span", "used by", { class: "muted" }));
        for (const child of usedBy) column.append(link(child, "used"));
        card.append(el("span", "→", { class: "arrow" }), column);
      }
      return card;
    });
  $("#lineage").replaceChildren(...cards);
  highlightTarget();
}

function renderRecent(recent, capacity) {
  const rows = recent.map((call) => {
    const tr = el("tr", null, { class: call.code === "OK" ? "" : "failed" });
    tr.append(
      el("td", timeOfDay(call.ended_at), { title: call.ended_at }),
      el("td", call.method),
      el("td", call.code),
      el("td", duration(call.duration_seconds), { class: "num", "data-value": call.duration_seconds }),
    );
    return tr;
  });
  $("#recent tbody").replaceChildren(...rows);
  setText("#recent-count", `(last ${recent.length} of at most ${capacity})`);
}

function render(data) {
  $("#content").hidden = false;
  setText("#version", `v${data.version}`);
  setText("#who", data.subject ? `signed in as ${data.subject} (${data.grants})` : "");
  const serverWide = data.stats !== null;
  $("#server").hidden = !serverWide;
  $("#recent-section").hidden = !serverWide;
  $("#server-hidden").hidden = serverWide;
  if (serverWide) {
    renderServer(data.stats);
    renderRecent(data.recent, data.recent_capacity);
  }
  renderFlights(data.flights);
  renderLineage(data.flights);
}

/** Marks the lineage card the address points at (it is rebuilt at every refresh, so :target alone would not last). */
function highlightTarget() {
  for (const card of document.querySelectorAll(".lineage.selected")) card.classList.remove("selected");
  const id = decodeURIComponent(location.hash.slice(1));
  const card = id ? document.getElementById(id) : null;
  if (card && card.classList.contains("lineage")) card.classList.add("selected");
}

// ---------- polling ----------

async function refresh() {
  if (authRequired && !token()) {
    clearData();
    showStatus("token-required", "This server requires a bearer token: paste one above.");
    return;
  }
  const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
  let response;
  try {
    response = await fetch("api/dashboard", { headers, cache: "no-store" });
  } catch (error) {
    showStatus("error", `Cannot reach the server (${error.message}); retrying.`);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    clearData();
    showStatus("token-refused", `The token was refused: ${body.error || response.statusText}`);
    return;
  }
  if (!response.ok) {
    showStatus("error", `The server answered ${response.status}: ${body.error || response.statusText}`);
    return;
  }
  render(body);
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
  showStatus("ok", `Updated ${timeOfDay(body.now)}; refreshes every ${REFRESH_MS / 1000} s.`);
}

async function loop() {
  clearTimeout(timer);
  try {
    await refresh();
  } finally {
    timer = setTimeout(loop, REFRESH_MS);
  }
}

async function start() {
  try {
    const response = await fetch("api/info", { cache: "no-store" });
    const info = await response.json();
    authRequired = info.auth;
    setText("#version", `v${info.version}`);
  } catch (error) {
    showStatus("error", `Cannot reach the server (${error.message}).`);
  }
  const form = $("#token-form");
  form.hidden = !authRequired;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("#token").value = "";
    loop();
  });
  $("#forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    loop();
  });
  window.addEventListener("hashchange", highlightTarget);
  loop();
}

start();
