// herd's dashboard: reads only /api/v1/* and the event stream /api/v1/events.
// No framework, no build step; every string from the API goes through
// textContent (never innerHTML), so no name or client string can inject markup.
"use strict";

const state = {
  view: "fleet",
  fleet: null,
  nodes: new Map(),       // id → node (from /api/v1/nodes, updated by `node` events)
  cpuHistory: new Map(),  // id → [utilization…] from `node` events
  rate: [],               // requests/s from `stats` events
  decisions: [],          // newest first
  requests: [],           // newest first
  health: null,
  traces: { filter: {}, pages: [], rows: [] },
  timer: null,
  token: 0,
};

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}
async function api(path) {
  const r = await fetch("/api/v1/" + path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)) + " " + u[i];
}
function num(n, digits = 0) {
  if (n == null || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}
function ms(n) {
  if (n == null) return "–";
  if (n < 1) return (n * 1000).toFixed(0) + " µs";
  if (n < 1000) return n.toFixed(n < 10 ? 1 : 0) + " ms";
  return (n / 1000).toFixed(n < 10000 ? 2 : 1) + " s";
}
function ago(atMs) {
  const s = Math.max(0, (Date.now() - atMs) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function time(atMs) { return new Date(atMs).toLocaleTimeString([], { hour12: false }); }
function meter(fraction, warnAt = 0.8, badAt = 0.95) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  return h("div", { class: "meter" + (f >= badAt ? " bad" : f >= warnAt ? " warn" : ""), role: "meter",
    "aria-valuenow": Math.round(f * 100), "aria-valuemin": 0, "aria-valuemax": 100 },
    h("span", { style: "width:" + (f * 100).toFixed(1) + "%" }));
}
function sparkline(values, max) {
  const w = 120, hgt = 30;
  const svg = s("svg", { class: "spark", viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  if (values.length < 2) return svg;
  const top = max || Math.max(...values, 1e-9);
  const pts = values.map((v, i) => [i * w / (values.length - 1), hgt - 1 - (v / top) * (hgt - 2)]);
  const line = pts.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
  svg.append(s("path", { class: "area", d: line + ` L${w} ${hgt} L0 ${hgt} Z` }), s("path", { d: line }));
  return svg;
}
function bars(values) {
  const w = 160, hgt = 30, n = Math.max(values.length, 1), top = Math.max(...values, 1);
  const svg = s("svg", { class: "spark bars", viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  values.forEach((v, i) => {
    const bh = Math.max(v > 0 ? 1 : 0, (v / top) * hgt);
    svg.append(s("rect", { x: (i * w / n).toFixed(1), y: (hgt - bh).toFixed(1), width: Math.max(1, w / n - 1).toFixed(1), height: bh.toFixed(1) }));
  });
  return svg;
}
function empty(text) { return h("div", { class: "empty" }, text); }
function table(headers, rows) {
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map(([t, cls]) => h("th", { class: cls }, t)))),
    h("tbody", {}, rows)));
}
function mount(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children.filter(c => c !== null && c !== undefined && c !== false));
}

// ---------- header ----------

function renderChips() {
  const f = state.fleet;
  const chips = document.getElementById("chips");
  if (!f) return;
  const n = f.nodes, total = n.online + n.degraded + n.offline;
  const last = state.rate.length ? state.rate[state.rate.length - 1] : null;
  chips.replaceChildren(
    h("span", { class: "chip", title: "Nodes online / known" }, h("b", {}, n.online), " / ", total, " nodes"),
    h("span", { class: "chip", title: "Requests per second, last minute" }, h("b", {}, num(last ? last.requests_per_s : f.last_minute.requests_per_s, 1)), " req/s"),
    h("span", { class: "chip hide-sm", title: "Tokens generated per second, last minute" }, h("b", {}, num(last ? last.tokens_per_s : f.last_minute.tokens_per_s, 0)), " tok/s"),
    h("span", { class: "chip", title: "Requests in flight" }, h("b", {}, last ? last.in_flight : f.in_flight), " in flight"),
    h("span", { class: "chip hide-sm", title: "Requests queued" }, h("b", {}, last ? last.queue_length : f.queue_length), " queued"),
  );
  const hb = document.getElementById("health-badge");
  const hc = f.health;
  const firing = hc.critical + hc.warning + hc.info;
  hb.hidden = firing === 0;
  hb.textContent = firing;
  hb.className = "badge" + (hc.critical ? "" : hc.warning ? " warning" : " info");
  document.getElementById("foot").textContent = `herd ${f.router.version} · up ${Math.round(f.router.uptime_s / 60)} min · ` +
    `${f.router.proxies.connected}/${f.router.proxies.expected} proxies · fleet key ${f.router.fleet_key ? "set" : "not set"}`;
}

// ---------- views ----------

// What `herd benchmark` measured per node:model (routing starts from it): throughput at each concurrency, the knee.
function benchmarkTable(results) {
  const intro = h("p", { class: "muted" }, "herd benchmark measures each node:model through the router; routing starts from its figures.");
  if (!results || !results.length) return h("section", { id: "benchmarks" }, h("h3", {}, "Benchmarks"), intro, empty("None yet: run herd benchmark."));
  const rows = results.map(b => {
    const unit = b.kind === "embed" ? "inputs/s" : "tok/s";
    const one = b.steps.find(s => s.concurrency === 1) || b.steps[0];
    return h("tr", {},
      h("td", {}, b.node), h("td", {}, b.model), h("td", {}, b.kind),
      h("td", { class: "num", title: "the concurrency past which throughput stopped growing: the limit routing starts from" }, b.knee),
      h("td", {}, b.steps.map(s => h("span", { class: "tag" + (s.concurrency === b.knee ? " ok" : "") + (s.errors ? " bad" : ""),
        title: `${s.requests} requests, ${s.errors} errors; first byte p50 ${ms(s.ttft_ms)}` }, `${s.concurrency}× ${num(s.per_second, 1)}`)), " ", unit),
      h("td", { class: "num" }, ms(one.ttft_ms)),
      h("td", { class: "hide-sm" }, ago(b.at_ms)));
  });
  return h("section", { id: "benchmarks" }, h("h3", {}, "Benchmarks"), intro,
    table([["Node"], ["Model"], ["Kind"], ["Knee", "num"], ["Throughput at each concurrency"], ["First byte alone", "num"], ["Measured", "hide-sm"]], rows));
}

const views = {
  async fleet(put = mount) {
    const [data, fleet] = await Promise.all([api("nodes"), api("fleet")]);
    state.nodes = new Map(data.nodes.map(n => [n.id, n]));
    state.providers = fleet.providers || [];
    renderFleet();
  },
  async models(put = mount) {
    const [data, nodes, measured] = await Promise.all([api("models"), api("nodes"), api("benchmarks").catch(() => ({ benchmarks: [] }))]);
    const manage = modelManager(nodes.nodes);
    const benchmarks = benchmarkTable(measured.benchmarks);
    if (!data.models.length) return put(h("h2", {}, "Models"), manage.toolbar, empty("No node reports a model yet."));
    const rows = [];
    for (const m of data.models) {
      const lh = m.last_hour;
      const kind = { chat: "chat", embed: "embeddings", rerank: "rerank", stt: "speech-to-text", tts: "text-to-speech", image: "images" }[m.kind] || m.kind;
      rows.push(h("tr", {}, h("td", { colspan: 11 }, h("h3", {}, m.name, " ", h("span", { class: "tag", title: "the kind of work it does" }, kind)), h("span", { class: "muted" },
        ` ${num(lh.requests)} requests · ${num(lh.completion_tokens)} tokens out in the last hour · TTFT p50 ${ms(lh.ttft_p50_ms)}`),
        m.context_fit ? h("span", { class: "muted", title: "--num-ctx-policy fit: the context cold loads get, judged by time to first byte" },
          ` · context fit ${m.context_fit.phase}` + (m.context_fit.num_ctx ? ` at ${num(m.context_fit.num_ctx)}` : "") +
          (m.context_fit.ttft_before_ms != null ? ` (first byte ${ms(m.context_fit.ttft_before_ms)}` +
            (m.context_fit.ttft_after_ms != null ? ` → ${ms(m.context_fit.ttft_after_ms)})` : " before)") : "")) : null)));
      for (const p of m.nodes) {
        const t = p.last_hour;
        rows.push(h("tr", {},
          h("td", {}, h("span", { class: "dot " + p.status }), " ", p.node),
          h("td", {}, p.loaded ? h("span", { class: "tag ok" }, "loaded") : p.on_disk ? h("span", { class: "tag" }, "on disk") : h("span", { class: "tag bad" }, "absent")),
          h("td", { class: "num hide-sm" }, p.loaded ? bytes(p.vram_bytes) : bytes(p.size_bytes)),
          h("td", { class: "num hide-sm", title: "loaded context / what 99 % of the last hour's requests used (prompt + output)" },
            (p.context_length ? num(p.context_length) : "–") + (t.context_p99_tokens != null ? ` / ${num(t.context_p99_tokens)} used` : ""),
            p.context_length && t.context_p99_tokens > p.context_length ? h("span", { class: "tag bad" }, "too small") : null),
          h("td", { class: "num" }, `${p.in_flight} / ${p.concurrency}`),
          h("td", { class: "num" }, p.queued),
          h("td", { class: "num" }, num(t.requests)),
          h("td", { class: "num hide-sm" }, num(t.completion_tokens)),
          h("td", { class: "num" }, `${ms(t.ttft_p50_ms)} / ${ms(t.ttft_p95_ms)}`),
          h("td", { class: "num" }, num(t.decode_tokens_per_s, 1)),
          h("td", {}, p.on_disk ? h("button", { onclick: () => manage.remove(p.node, m.name), "aria-label": `delete ${m.name} from ${p.node}` }, "Delete") : "")));
      }
    }
    put(h("h2", {}, "Models"), manage.toolbar, table([["Node"], ["State"], ["VRAM / size", "num hide-sm"], ["Context", "num hide-sm"],
      ["In flight / limit", "num"], ["Queued", "num"], ["Req/h", "num"], ["Tokens/h", "num hide-sm"], ["TTFT p50 / p95", "num"], ["Tok/s", "num"], [""]], rows),
      benchmarks);
  },
  async routing(put = mount) {
    const [data, queues] = await Promise.all([api("decisions?limit=100"), api("queues")]);
    state.decisions = data.decisions.slice().reverse();
    renderRouting(queues);
  },
  async requests(put = mount) { await loadTraces(false); },
  async apps(put = mount) {
    const by = state.appsBy || "tag", hours = state.appsHours || 24;
    const data = await api(`usage?by=${by}&hours=${hours}`);
    const controls = h("div", { class: "toolbar" },
      h("label", {}, "By", h("select", { onchange: e => { state.appsBy = e.target.value; show("apps"); } },
        ["tag", "client", "key"].map(v => h("option", { value: v, selected: v === by }, v)))),
      h("label", {}, "Over", h("select", { onchange: e => { state.appsHours = +e.target.value; show("apps"); } },
        [[1, "1 hour"], [24, "24 hours"], [168, "7 days"], [720, "30 days"]].map(([v, t]) => h("option", { value: v, selected: v === hours }, t)))));
    if (!data.series.length) return put(h("h2", {}, "Apps"), controls, empty("No traced requests in this window."));
    const slots = Math.floor((Date.now() - data.since_ms) / (data.bucket_s * 1000)) + 1;
    const rows = data.series.map(x => {
      const counts = new Array(slots).fill(0);
      for (const b of x.buckets) {
        const i = Math.floor((b.at_ms - data.since_ms) / (data.bucket_s * 1000));
        if (i >= 0 && i < slots) counts[i] = b.requests;
      }
      return h("tr", {}, h("td", {}, x.key), h("td", { class: "num" }, num(x.requests)), h("td", { class: "num" }, num(x.prompt_tokens)),
        h("td", { class: "num" }, num(x.completion_tokens)), h("td", { class: "num" + (x.errors ? " err" : "") }, num(x.errors)),
        h("td", { class: "num" }, ms(x.mean_duration_ms)), h("td", { class: "hide-sm", style: "min-width:160px" }, bars(counts)));
    });
    put(h("h2", {}, "Apps — usage by " + by), controls, table([[{ tag: "Tag", client: "Client", key: "Key" }[by]], ["Requests", "num"], ["Prompt tokens", "num"],
      ["Tokens out", "num"], ["Errors", "num"], ["Mean duration", "num"], ["Requests over time", "hide-sm"]], rows));
  },
  // Client keys: listed with their limits and usage; made (the secret shown
  // once) and revoked with the fleet key or an admin key (kept for this tab).
  async keys(put = mount) {
    const data = await api("keys");
    const status = h("p", { class: "muted", id: "keys-status", role: "status" },
      data.required ? "Requests need a key (--require-key)." : "Keys are optional here: a request without one is served with no limits.");
    const say = (text, bad) => { status.textContent = text; status.className = bad ? "err" : "muted"; };
    const keyInput = h("input", { type: "password", id: "keys-admin-key", autocomplete: "off", size: 24, "aria-label": "fleet or admin key",
      placeholder: "fleet or admin key", value: sessionStorage.getItem("herd-fleet-key") || "" });
    const call = async (method, path, body) => {
      const headers = { "Content-Type": "application/json" };
      if (keyInput.value) { sessionStorage.setItem("herd-fleet-key", keyInput.value); headers.Authorization = "Bearer " + keyInput.value; }
      const r = await fetch("/api/v1/keys" + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
      const answer = await r.json().catch(() => ({}));
      if (!r.ok) say(answer.error || "HTTP " + r.status, true);
      return r.ok ? answer : null;
    };
    const field = (id, label, attrs = {}) => h("label", {}, label, h("input", Object.assign({ id, size: 8 }, attrs)));
    const secret = h("p", { class: "mono", id: "keys-secret" });
    const create = async () => {
      const v = id => document.getElementById(id).value.trim();
      const body = { name: v("key-name") };
      if (v("key-models")) body.models = v("key-models");
      for (const f of ["rpm", "tpm"]) if (v("key-" + f)) body[f] = Number(v("key-" + f));
      if (v("key-budget")) body.budget_tokens = v("key-budget") + "/" + v("key-period");
      const made = await call("POST", "", body);
      if (!made) return;
      await show("keys");
      const box = document.getElementById("keys-secret");
      if (box) box.textContent = `Key for ${made.name} (shown this once): ${made.key}`;
    };
    const revoke = async k => {
      if (!confirm(`Revoke key ${k.name}? Requests with it are refused from now on.`)) return;
      if (await call("DELETE", "/" + encodeURIComponent(k.id))) show("keys");
    };
    const limits = k => [k.rpm != null ? `${num(k.rpm)} req/min` : null, k.tpm != null ? `${num(k.tpm)} tok/min` : null,
      k.budget_tokens != null ? `${num(k.budget_tokens)} tok/${k.budget_period}` : null].filter(Boolean).join(" · ") || "none";
    const rows = data.keys.map(k => {
      const u = k.usage, refused = Object.values(u.since_start.refused).reduce((a, b) => a + b, 0);
      return h("tr", {},
        h("td", {}, k.name, k.admin ? h("span", { class: "tag warn" }, "admin") : null, ...k.tags.map(t => h("span", { class: "tag" }, t))),
        h("td", { class: "mono hide-sm" }, k.prefix + "…"),
        h("td", {}, k.models.length ? k.models.join(", ") : "any"),
        h("td", {}, limits(k)),
        h("td", { class: "num" }, `${num(u.last_minute_requests)} / ${num(u.last_minute_tokens)}`),
        h("td", { class: "num" }, k.budget_tokens != null ? `${num(u.budget_used)} / ${num(k.budget_tokens)}` : num(u.budget_used)),
        h("td", { class: "num" }, num(u.since_start.requests)),
        h("td", { class: "num" + (refused ? " err" : "") }, num(refused)),
        h("td", {}, h("button", { onclick: () => revoke(k), "aria-label": `revoke ${k.name}` }, "Revoke")));
    });
    put(h("h2", {}, `Keys — ${data.keys.length}`), status,
      h("div", { class: "toolbar" }, field("key-name", "Name", { placeholder: "alice-laptop", size: 14 }),
        field("key-models", "Models", { placeholder: "llama3*,qwen2.5:*", size: 16 }), field("key-rpm", "Req/min", { inputmode: "numeric" }),
        field("key-tpm", "Tokens/min", { inputmode: "numeric" }), field("key-budget", "Budget", { inputmode: "numeric" }),
        h("select", { id: "key-period", "aria-label": "budget period" }, ["day", "week", "month"].map(p => h("option", { value: p }, "per " + p))),
        h("button", { class: "primary", onclick: create }, "Make key"), keyInput),
      secret,
      data.keys.length ? table([["Key"], ["Prefix", "hide-sm"], ["Models"], ["Limits"], ["Last minute req / tok", "num"], ["Budget used", "num"],
        ["Requests", "num"], ["Refused", "num"], [""]], rows) : empty("No keys yet: make one above, or with herd-control keys create NAME."));
  },
  async capacity(put = mount) {
    const data = await api("capacity");
    const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const now = new Date(), nowSlot = now.getDay() * 24 + now.getHours();
    const cards = data.nodes.map(n => {
      const heat = h("div", { class: "heat", role: "img", "aria-label": `availability of ${n.id} per hour of the week` });
      heat.append(h("span", { class: "lbl" }));
      for (let hr = 0; hr < 24; hr++) heat.append(h("span", { class: "lbl" }, hr % 6 === 0 ? String(hr) : ""));
      for (let d = 0; d < 7; d++) {
        heat.append(h("span", { class: "lbl" }, days[d]));
        for (let hr = 0; hr < 24; hr++) {
          const v = n.week ? n.week[d * 24 + hr] : -1;
          const color = v < 0 ? "var(--bar)" : `color-mix(in srgb, var(--ok) ${Math.round(v * 100)}%, var(--bad))`;
          heat.append(h("span", { class: d * 24 + hr === nowSlot ? "now" : "", style: "background:" + color,
            title: `${days[d]} ${hr}:00 — ${v < 0 ? "not learned" : Math.round(v * 100) + "% free"}` }));
        }
      }
      return h("div", { class: "card" }, h("header", {}, h("span", { class: "dot " + n.status }), h("h3", {}, n.id),
        h("span", { class: "muted" }, n.week ? `${n.learned_hours}/168 hours learned · ${Math.round((n.availability_now || 0) * 100)}% free now` : "not learning (herd-node --learn-capacity)")),
        heat);
    });
    put(h("h2", {}, "Capacity — when each machine's owner leaves it free"),
      cards.length ? h("div", { class: "grid", style: "grid-template-columns:repeat(auto-fill,minmax(420px,1fr))" }, cards) : empty("No nodes."),
      h("div", { class: "legend" }, h("i", { style: "background:var(--bad)" }), "busy", h("i", { style: "background:var(--ok)" }), "free",
        h("i", { style: "background:var(--bar)" }), "not learned", " · outlined: this hour"));
  },
  async health(put = mount) {
    state.health = await api("health");
    const order = (a, b) => sev(b.severity) - sev(a.severity) || a.title.localeCompare(b.title);
    const firing = state.health.checks.filter(c => c.state === "firing").sort(order);
    const passing = state.health.checks.filter(c => c.state !== "firing").sort((a, b) => a.title.localeCompare(b.title));
    put(h("h2", {}, firing.length ? `Health — ${firing.length} firing` : "Health — all clear"),
      firing.length ? h("div", { class: "grid" }, firing.map(c => h("div", { class: "card check sev-" + c.severity, id: "check-" + c.id },
        h("header", {}, h("h3", {}, c.title), h("span", { class: "tag " + (c.severity === "critical" ? "bad" : "warn") }, c.severity),
          h("span", { class: "muted" }, "since " + ago(c.since_ms))),
        h("p", {}, c.message), h("p", { class: "advice" }, c.advice), h("p", { class: "muted" }, `${c.condition} (${c.threshold})`))))
        : h("p", { class: "muted" }, `All ${passing.length} checks pass.`),
      h("h3", { style: "margin:16px 0 8px" }, `Passing (${passing.length})`),
      table([["Check"], ["Fires when"], ["Severity", "hide-sm"], ["OK since", "hide-sm"]], passing.map(c => h("tr", { class: "check ok", id: "check-" + c.id },
        h("td", {}, c.title), h("td", { class: "muted" }, `${c.condition} (${c.threshold})`), h("td", { class: "hide-sm" }, c.severity),
        h("td", { class: "hide-sm nowrap" }, c.since_ms ? ago(c.since_ms) : "–")))));
  },
  async settings(put = mount) {
    const [data, nodes] = await Promise.all([api("settings"), api("nodes")]);
    const rows = [];
    const walk = (prefix, obj) => {
      for (const [k, v] of Object.entries(obj)) {
        if (v && typeof v === "object" && !Array.isArray(v)) walk(prefix + k + ".", v);
        else rows.push(h("tr", {}, h("td", { class: "mono" }, prefix + k), h("td", { class: "mono" }, v === null ? "–" : String(v))));
      }
    };
    walk("", data);
    const keyed = data.fleet_key === "set";
    const status = h("p", { class: "muted", id: "action-status", role: "status" },
      keyed ? "This router has a fleet key: enter it to drain, pause or resume a node (it is kept for this tab only and sent with each action)."
            : "No fleet key is set: node actions need none.");
    const keyInput = keyed ? h("label", {}, "Fleet key", h("input", { type: "password", id: "fleet-key", autocomplete: "off", size: 28,
      value: sessionStorage.getItem("herd-fleet-key") || "" })) : null;
    const act = async (id, action) => {
      const headers = { "Content-Type": "application/json" };
      if (keyed) {
        const key = document.getElementById("fleet-key").value;
        sessionStorage.setItem("herd-fleet-key", key);
        headers.Authorization = "Bearer " + key;
      }
      const r = await fetch(`/api/v1/nodes/${encodeURIComponent(id)}/${action}`, { method: "POST", headers, body: "{}" });
      const body = await r.json().catch(() => ({}));
      const box = document.getElementById("action-status");
      box.textContent = r.ok ? `${id}: ${body.hold ? body.hold + (body.in_flight ? ` (${body.in_flight} in flight finish first)` : "") : "resumed"}` : `${id}: ${body.error || "HTTP " + r.status}`;
      box.className = r.ok ? "muted" : "err";
      if (r.ok) setTimeout(() => { if (state.view === "settings") show("settings"); }, 300);
    };
    const actions = nodes.nodes.map(n => h("tr", {},
      h("td", {}, h("span", { class: "dot " + n.status }), " ", n.id),
      h("td", {}, n.hold ? h("span", { class: "tag warn" }, n.hold === "drain" ? "drained" : "paused") : h("span", { class: "tag ok" }, "routing")),
      h("td", { class: "num" }, n.in_flight),
      h("td", {}, h("button", { onclick: () => act(n.id, "drain"), disabled: n.hold === "drain" }, "Drain"), " ",
        h("button", { onclick: () => act(n.id, "pause"), disabled: n.hold === "pause" }, "Pause"), " ",
        h("button", { class: "primary", onclick: () => act(n.id, "resume"), disabled: !n.hold }, "Resume"))));
    put(h("h2", {}, "Settings"),
      h("h3", {}, "Node actions"), status, keyInput ? h("div", { class: "toolbar" }, keyInput) : null,
      nodes.nodes.length ? table([["Node"], ["Routing"], ["In flight", "num"], ["Action"]], actions) : h("p", { class: "muted" }, "No nodes."),
      h("h3", { style: "margin:16px 0 8px" }, "Effective configuration (read-only: set by flags and HERD_* variables)"),
      table([["Setting"], ["Value"]], rows));
  },
};
// Pull a model to a node (Ollama's progress shown as it streams) or delete one
// from it: POST /api/v1/nodes/{id}/pull|delete, with the fleet key of the
// Settings view when the router has one.
function modelManager(nodes) {
  const status = h("span", { class: "muted", id: "model-status", role: "status" }, "");
  const say = (text, bad) => { status.textContent = text; status.className = bad ? "err" : "muted"; };
  const headers = () => {
    const out = { "Content-Type": "application/json" };
    const key = sessionStorage.getItem("herd-fleet-key");
    if (key) out.Authorization = "Bearer " + key;
    return out;
  };
  const call = async (node, action, model) => {
    const r = await fetch(`/api/v1/nodes/${encodeURIComponent(node)}/${action}`, { method: "POST", headers: headers(), body: JSON.stringify({ model }) });
    if (r.status === 401) { say(`${action}: this router has a fleet key: enter it in Settings first`, true); return null; }
    return r;
  };
  const select = h("select", { id: "pull-node", "aria-label": "node" }, nodes.map(n => h("option", { value: n.id }, n.id)));
  const input = h("input", { id: "pull-model", placeholder: "model, e.g. llama3.2:3b", size: 24, "aria-label": "model to pull" });
  const pull = async () => {
    const node = select.value, model = input.value.trim();
    if (!node || !model) return say("Pick a node and name a model.", true);
    say(`${node}: pulling ${model}…`);
    const r = await call(node, "pull", model);
    if (!r) return;
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let rest = "", last = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += decoder.decode(value, { stream: true });
      const lines = rest.split("\n");
      rest = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        try { last = JSON.parse(line); } catch { continue; }
        if (last.error) return say(`${node}: ${last.error}`, true);
        const pct = last.total ? ` ${Math.floor(100 * (last.completed || 0) / last.total)} %` : "";
        say(`${node}: ${last.status}${pct}`);
      }
    }
    if (!r.ok) return say(`${node}: pull failed (HTTP ${r.status})`, true);
    if (last && last.status === "success") { say(`${node}: ${model} pulled`); setTimeout(() => { if (state.view === "models") show("models"); }, 2500); }
  };
  const remove = async (node, model) => {
    if (!confirm(`Delete ${model} from ${node}?`)) return;
    const r = await call(node, "delete", model);
    if (!r) return;
    if (r.ok) { say(`${node}: ${model} deleted`); setTimeout(() => { if (state.view === "models") show("models"); }, 2500); }
    else say(`${node}: ${(await r.json().catch(() => ({}))).error || "delete failed (HTTP " + r.status + ")"}`, true);
  };
  const toolbar = h("div", { class: "toolbar" }, h("label", {}, "Pull to", select), input,
    h("button", { class: "primary", onclick: pull, id: "pull-button" }, "Pull"), status);
  return { toolbar, remove };
}

function sev(s) { return s === "critical" ? 3 : s === "warning" ? 2 : 1; }

function nodeCard(n) {
  const used = n.memory.total_bytes ? 1 - n.memory.available_bytes / n.memory.total_bytes : 0;
  const tags = [];
  if (n.hold) tags.push(h("span", { class: "tag warn" }, (n.hold === "drain" ? "drained" : "paused") + " by operator"));
  if (n.meeting && n.meeting.in_meeting) tags.push(h("span", { class: "tag warn" }, "in a meeting"));
  if (n.memory.pressure === "high" || n.memory.pressure === "critical") tags.push(h("span", { class: "tag bad" }, "memory " + n.memory.pressure));
  if (n.thermal.state === "serious" || n.thermal.state === "critical" || n.cpu.throttled || n.gpus.some(g => g.throttled)) tags.push(h("span", { class: "tag bad" }, "throttled"));
  const loaded = n.backends.flatMap(b => b.loaded.map(m => ({ ...m, kind: b.kind })));
  const t = n.last_5_minutes;
  const history = state.cpuHistory.get(n.id) || [];
  return h("article", { class: "card node", id: "node-" + n.id, "data-node": n.id },
    h("header", {}, h("span", { class: "dot " + n.status, title: n.status }), h("h3", {}, n.id),
      h("span", { class: "muted" }, n.status === "online" ? "" : n.status + " · seen " + ms(n.last_seen_ms_ago) + " ago"), ...tags),
    h("div", { class: "row" }, h("span", {}, `CPU · ${n.cpu.cores} cores`), h("span", {}, Math.round((n.cpu.utilization || 0) * 100) + "%")),
    meter(n.cpu.utilization, 0.85, 0.97),
    h("div", { class: "row" }, h("span", {}, "Memory · pressure " + n.memory.pressure), h("span", {}, `${bytes(n.memory.total_bytes - n.memory.available_bytes)} / ${bytes(n.memory.total_bytes)}`)),
    meter(used),
    n.memory.swap_used_bytes > 0 ? h("div", { class: "row muted" }, h("span", {}, "Swap"), h("span", {}, bytes(n.memory.swap_used_bytes))) : null,
    ...n.gpus.map(g => [
      h("div", { class: "row" }, h("span", {}, `${g.name || g.vendor} · ${Math.round((g.utilization || 0) * 100)}%` + (g.temperature_celsius != null ? ` · ${Math.round(g.temperature_celsius)} °C` : "")),
        h("span", {}, `VRAM ${bytes(g.memory_used_bytes)} / ${bytes(g.memory_total_bytes)}`)),
      meter(g.memory_total_bytes ? g.memory_used_bytes / g.memory_total_bytes : 0, 0.85, 0.95)]),
    n.thermal.max_temperature_celsius != null ? h("div", { class: "row muted" }, h("span", {}, "Temperature · " + n.thermal.state), h("span", {}, Math.round(n.thermal.max_temperature_celsius) + " °C")) : null,
    history.length > 1 ? h("div", { class: "muted small", title: "CPU over the last heartbeats" }, "CPU, recent") : null,
    history.length > 1 ? sparkline(history, 1) : null,
    h("div", { class: "row muted" }, h("span", {}, `${num(t.requests_per_s * 60, 1)} req/min · ${num(t.tokens_per_s, 1)} tok/s (5 min)`), h("span", {}, `${n.in_flight} in flight`)),
    h("ul", { class: "plain models", "aria-label": "models loaded" },
      loaded.length ? loaded.map(m => h("li", {}, h("span", {}, m.name), h("span", { class: "muted" },
        `${m.in_flight}/${m.concurrency}` + (m.queued ? ` · ${m.queued} queued` : "") + (m.vram_bytes ? ` · ${bytes(m.vram_bytes)}` : ""))))
        : h("li", { class: "muted" }, "no model loaded")),
    n.backends.some(b => !b.reachable) ? h("p", { class: "err" }, n.backends.filter(b => !b.reachable).map(b => `${b.kind} ${b.address}: ${b.error || "not answering"}`).join("; ")) : null,
    // Busy: it took its node's probe and did not answer while serving herd's requests (still routed to, queued for).
    n.backends.some(b => b.reachable && b.error) ? h("p", { class: "muted small" }, n.backends.filter(b => b.reachable && b.error).map(b => `${b.kind} ${b.address}: ${b.error}`).join("; ")) : null);
}
function renderFleet() {
  if (state.view !== "fleet") return;
  const nodes = [...state.nodes.values()].sort((a, b) => a.id.localeCompare(b.id));
  const providers = state.providers || [];
  mount(h("h2", {}, `Fleet — ${nodes.length} machine${nodes.length === 1 ? "" : "s"}`),
    nodes.length ? h("div", { class: "grid" }, nodes.map(nodeCard)) : empty("No node has joined yet. Start herd-node on each machine; it finds this router by mDNS."),
    providers.length ? h("h3", { style: "margin:16px 0 8px" }, "Cloud nodes (overflow, for keys made with --cloud)") : null,
    providers.length ? table([["Node"], ["URL"], ["Models (local → provider)"]], providers.map(p => h("tr", { class: "provider" },
      h("td", {}, h("span", { class: "tag warn" }, "cloud"), " ", p.node), h("td", { class: "mono" }, p.url),
      h("td", {}, Object.entries(p.models).map(([l, r]) => `${l} → ${r}`).join(", ") || "none mapped")))) : null);
}

function decisionRow(d) {
  const tr = h("tr", { class: "clickable", title: "Show every candidate", onclick: () => showDecision(d.seq, tr) },
    h("td", { class: "mono" }, d.at_ms ? time(d.at_ms) : ""), h("td", {}, d.model),
    h("td", {}, d.action === "queued" ? h("span", { class: "tag warn" }, "queued") : h("span", { class: "tag ok" }, "routed")),
    h("td", { class: "nowrap" }, d.node || "–"), h("td", { class: "mono hide-sm" }, d.score), h("td", { class: "muted hide-sm" }, d.reason));
  return tr;
}
function requestRow(r) {
  return h("tr", {}, h("td", { class: "mono" }, r.request_id), h("td", {}, r.model + (r.served_model && r.served_model !== r.model ? " → " + r.served_model : "")),
    h("td", {}, r.node || "–"), h("td", { class: "outcome-" + r.outcome }, r.outcome), h("td", { class: "num" }, ms(r.duration_ms)),
    h("td", { class: "num" }, r.tokens), h("td", {}, r.ticket ? "ticket" : "route"), h("td", { class: "num" }, r.retries || ""),
    h("td", { class: "num hide-sm" }, r.queued_ms ? ms(r.queued_ms) : ""));
}
function renderRouting(queues) {
  if (state.view !== "routing") return;
  const q = queues || state.queues;
  state.queues = q;
  const slots = q ? q.slots.filter(s => s.in_flight || s.queued).map(s => h("tr", {}, h("td", {}, s.node), h("td", {}, s.model),
    h("td", { class: "num" }, `${s.in_flight} / ${s.limit}`), h("td", { class: "num" }, s.queued))) : [];
  mount(h("h2", {}, "Routing — live decisions"),
    h("div", { class: "split" },
      h("section", {}, state.decisions.length ? table([["Time"], ["Model"], ["Action"], ["Node"], ["Score", "hide-sm"], ["Why", "hide-sm"]],
        state.decisions.slice(0, 100).map(decisionRow)) : empty("No decision yet: send a request to the router."),
        state.decisionDetail || h("div", { id: "decision-detail", class: "detail" })),
      h("section", {},
        h("h3", {}, "Busy slots"), slots.length ? table([["Node"], ["Model"], ["In flight / limit", "num"], ["Queued", "num"]], slots) : h("p", { class: "muted" }, "Nothing in flight."),
        h("h3", { style: "margin-top:12px" }, "Requests finishing"),
        state.requests.length ? table([["Id"], ["Model"], ["Node"], ["Outcome"], ["Time", "num"], ["Tokens", "num"], ["By"], ["Retries", "num"], ["Queued", "num hide-sm"]],
          state.requests.slice(0, 40).map(requestRow)) : h("p", { class: "muted" }, "None yet."))));
}
async function showDecision(seq, tr) {
  const box = document.getElementById("decision-detail");
  const data = await api(`decisions?since=${seq - 1}&limit=256`);
  const d = data.decisions.find(x => x.seq === seq);
  if (!d) { box.replaceChildren(h("p", { class: "muted" }, "That decision is no longer kept (the newest 256 are).")); return; }
  box.replaceChildren(h("h3", {}, `Decision ${d.seq}: ${d.model} → ${d.node || "queued"}`), h("p", { class: "muted" }, d.reason), candidatesTable(d.candidates));
  state.decisionDetail = box;
  tr.scrollIntoView({ block: "nearest" });
}
function candidatesTable(card) {
  // The score card: candidates ranked (the first was chosen), then eliminations.
  const list = Array.isArray(card) ? card : [];
  if (!list.length) return h("p", { class: "muted" }, "No candidates recorded.");
  let rank = 0;
  const rows = list.map(c => {
    if (c.eliminated) return h("tr", {}, h("td", {}, "✕"), h("td", {}, c.node), h("td", {}, c.model), h("td", { colspan: 4, class: "muted" }, c.eliminated));
    rank += 1;
    const notes = [c.factor ? "×" + c.factor : "", c.drains ? "waits for the node to drain" : "", c.affinity ? `affinity ${c.affinity} (−${ms(c.affinity_gain)})` : "",
      ...(c.penalties || [])].filter(Boolean).join(", ");
    return h("tr", {}, h("td", {}, rank === 1 ? "▶ 1" : String(rank)), h("td", {}, c.node), h("td", {}, c.model + " · " + c.state),
      h("td", { class: "num" }, h("b", {}, ms(c.ect_ms))),
      h("td", { class: "num hide-sm mono" }, `${ms(c.wait)} + ${ms(c.load)} + ${ms(c.prefill)} + ${ms(c.decode)}`),
      h("td", { class: "num" }, `${c.in_flight} / ${c.limit}`), h("td", { class: "muted" }, notes));
  });
  return table([["#"], ["Node"], ["Model"], ["Expected completion", "num"], ["wait + load + prefill + decode", "num hide-sm"], ["In flight", "num"], ["Notes"]], rows);
}

async function loadTraces(next) {
  const f = state.traces.filter;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) params.set(k, v);
  if (f.window) { params.delete("window"); params.set("since", String(Date.now() - f.window * 1000)); }
  if (next && state.traces.next) params.set("before", state.traces.next);
  params.set("limit", "50");
  const data = await api("traces?" + params);
  state.traces.next = data.next_before;
  state.traces.rows = next ? state.traces.rows.concat(data.traces) : data.traces;
  renderTraces();
}
function renderTraces() {
  if (state.view !== "requests") return;
  const f = state.traces.filter;
  const field = (name, label, placeholder) => h("label", {}, label, h("input", { name, value: f[name] || "", placeholder, size: 12 }));
  const form = h("form", { class: "toolbar", onsubmit: e => {
    e.preventDefault();
    const data = new FormData(e.target);
    state.traces.filter = Object.fromEntries([...data.entries()].filter(([, v]) => v));
    loadTraces(false);
  } },
    h("label", {}, "When", h("select", { name: "window" }, [["", "any time"], ["900", "15 min"], ["3600", "1 hour"], ["86400", "24 hours"], ["604800", "7 days"]]
      .map(([v, t]) => h("option", { value: v, selected: String(f.window || "") === v }, t)))),
    field("model", "Model", "any"), field("node", "Node", "any"),
    h("label", {}, "Outcome", h("select", { name: "outcome" }, ["", "ok", "upstream_error", "rejected", "client_gone", "timeout"]
      .map(v => h("option", { value: v, selected: (f.outcome || "") === v }, v || "any")))),
    field("tag", "Tag", "any"), field("client", "Client", "any"), h("button", { class: "primary", type: "submit" }, "Filter"));
  const rows = state.traces.rows.map(t => h("tr", { class: "clickable", onclick: () => showTrace(t.id) },
    h("td", { class: "mono" }, time(t.at_ms)), h("td", {}, t.model + (t.served_model && t.served_model !== t.model ? " → " + t.served_model : "")),
    h("td", {}, t.node_id || "–"), h("td", { class: "outcome-" + t.outcome }, `${t.outcome} ${t.status}`), h("td", { class: "num" }, ms(t.ttft_ms)),
    h("td", { class: "num" }, ms(t.duration_ms)), h("td", { class: "num hide-sm" }, `${t.prompt_tokens} / ${t.completion_tokens}`),
    h("td", { class: "hide-sm" }, (t.tags || []).join(", ")), h("td", { class: "mono hide-sm" }, t.client), h("td", { class: "hide-sm" }, t.ticket ? "ticket" : t.local ? "local" : "route")));
  mount(h("h2", {}, "Requests — the trace store"), form,
    rows.length ? table([["Time"], ["Model"], ["Node"], ["Outcome"], ["TTFT", "num"], ["Duration", "num"], ["Tokens in / out", "num hide-sm"],
      ["Tags", "hide-sm"], ["Client", "hide-sm"], ["By", "hide-sm"]], rows) : empty("No traced request matches."),
    state.traces.next ? h("p", {}, h("button", { onclick: () => loadTraces(true) }, "Older")) : null,
    h("div", { id: "trace-detail", class: "detail" }));
}
async function showTrace(id) {
  const t = await api("traces/" + id);
  const box = document.getElementById("trace-detail");
  const { candidates, ...rest } = t;
  box.replaceChildren(h("div", { class: "card" }, h("h3", {}, `Request ${t.request_id} · ${t.model} → ${t.node_id || "nowhere"}`),
    h("pre", {}, JSON.stringify(rest, null, 2)), h("h3", {}, "Candidates"), candidatesTable(candidates)));
  box.scrollIntoView({ block: "nearest" });
}

// ---------- navigation and live updates ----------

async function show(view) {
  const next = views[view] ? view : "fleet";
  if (next !== state.view) window.scrollTo(0, 0);
  state.view = next;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.view === state.view);
  // Only the newest call draws: a slow answer for a view left meanwhile is dropped.
  const token = ++state.token;
  const put = (...children) => { if (token === state.token) mount(...children); };
  try {
    await views[state.view](put);
  } catch (e) {
    put(h("p", { class: "err" }, "Could not load this view: " + e.message));
  }
}
async function refreshFleet() {
  try {
    state.fleet = await api("fleet");
    renderChips();
  } catch (e) { /* the live badge says when the router is away */ }
}
let routingPending = false;
function routingSoon() {
  if (state.view !== "routing" || routingPending) return;
  routingPending = true;
  setTimeout(() => { routingPending = false; renderRouting(); }, 500);
}
function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/v1/events");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  source.addEventListener("hello", e => { state.fleet = JSON.parse(e.data); renderChips(); });
  source.addEventListener("node", e => {
    const ev = JSON.parse(e.data);
    const hist = state.cpuHistory.get(ev.id) || [];
    hist.push(ev.cpu_utilization || 0);
    if (hist.length > 60) hist.shift();
    state.cpuHistory.set(ev.id, hist);
    const n = state.nodes.get(ev.id);
    if (!n) return;
    n.status = ev.status; n.hold = ev.hold; n.cpu.utilization = ev.cpu_utilization; n.in_flight = ev.in_flight; n.last_seen_ms_ago = 0;
    n.memory.available_bytes = ev.memory_available_bytes; n.memory.total_bytes = ev.memory_total_bytes; n.memory.pressure = ev.pressure;
    n.thermal.state = ev.thermal; n.meeting.in_meeting = ev.in_meeting;
    ev.gpus.forEach((g, i) => { if (n.gpus[i]) Object.assign(n.gpus[i], g); });
    if (state.view === "fleet") {
      const old = document.getElementById("node-" + ev.id);
      if (old) old.replaceWith(nodeCard(n));
    }
  });
  source.addEventListener("fleet", () => { refreshFleet(); if (state.view === "fleet") show("fleet"); });
  source.addEventListener("stats", e => {
    const st = JSON.parse(e.data);
    state.rate.push(st);
    if (state.rate.length > 120) state.rate.shift();
    renderChips();
  });
  source.addEventListener("decision", e => {
    const d = JSON.parse(e.data);
    d.at_ms = Date.now();
    state.decisions.unshift(d);
    state.decisions.length = Math.min(state.decisions.length, 200);
    routingSoon();
  });
  source.addEventListener("request", e => {
    state.requests.unshift(JSON.parse(e.data));
    state.requests.length = Math.min(state.requests.length, 100);
    routingSoon();
  });
  source.addEventListener("health", () => { refreshFleet(); if (state.view === "health") show("health"); });
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
document.addEventListener("DOMContentLoaded", async () => {
  await refreshFleet();
  await show(location.hash.slice(1) || "fleet");
  connect();
  // Views made of aggregates refresh every few seconds (the live parts come by events).
  state.timer = setInterval(() => {
    if (document.hidden) return;
    if (["models", "routing"].includes(state.view)) show(state.view);
    if (state.view === "fleet") show("fleet");
    refreshFleet();
  }, 5000);
});
