// TinyAgents debugger: a virtualized run tree, a timeline column, run details.
// No build step, no dependencies. Rows come from /api/tree as compact arrays:
// [id, parent, name, depth, status, start, end, in, out, costPico, error, rationale, summarized]
"use strict";

const ROW_H = 22;
const OVERSCAN = 20;
const ID = 0, PARENT = 1, NAME = 2, DEPTH = 3, STATUS = 4, START = 5, END = 6, IN = 7, OUT = 8, COST = 9, ERR = 10, WHY = 11, SUMMARIZED = 12;

const S = {
  rows: [], t1: 1, summary: null, mode: "", version: -1,
  end: new Int32Array(0), kids: new Int32Array(0), visible: [],
  collapsed: new Set(), selected: null, steering: false, loading: false, again: false,
};
window.__ta = { firstRenderMs: null, renders: 0, version: -1 };

const $ = (id) => document.getElementById(id);
const fmtInt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
function fmtCost(pico) {
  const usd = Number(pico) / 1e12;
  return "$" + (usd !== 0 && usd < 0.01 ? usd.toFixed(6) : usd.toFixed(4));
}
function fmtLat(us) {
  if (us == null) return "";
  if (us < 1000) return us + "µs";
  if (us < 1e6) return (us / 1e3).toFixed(1) + "ms";
  if (us < 6e7) return (us / 1e6).toFixed(2) + "s";
  const s = Math.floor(us / 1e6);
  return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// Subtree extents in pre-order: row i's subtree is [i, end[i]).
function index() {
  const n = S.rows.length;
  const size = new Int32Array(n).fill(1);
  const kids = new Int32Array(n);
  for (let i = n - 1; i >= 0; i--) {
    const p = S.rows[i][PARENT];
    if (p >= 0) { size[p] += size[i]; kids[p] += 1; }
  }
  const end = new Int32Array(n);
  for (let i = 0; i < n; i++) end[i] = i + size[i];
  S.end = end;
  S.kids = kids;
}

function computeVisible() {
  const v = [];
  const n = S.rows.length;
  for (let i = 0; i < n; i++) {
    v.push(i);
    if (S.kids[i] > 0 && S.collapsed.has(S.rows[i][ID])) i = S.end[i] - 1;
  }
  S.visible = v;
  $("spacer").style.height = v.length * ROW_H + "px";
}

function rowEl(i) {
  const r = S.rows[i];
  const d = el("div", "row " + r[STATUS]);
  d.dataset.id = r[ID];
  d.dataset.depth = r[DEPTH];
  d.dataset.index = i;
  if (r[ID] === S.selected) d.classList.add("selected");
  const name = el("span", "c-name");
  name.style.paddingLeft = 6 + Math.min(r[DEPTH], 40) * 14 + "px";
  const t = el("span", "toggle", S.kids[i] > 0 ? (S.collapsed.has(r[ID]) ? "▸" : "▾") : "");
  t.dataset.toggle = "1";
  name.appendChild(t);
  const label = el("span", "name", r[NAME] || "?");
  name.appendChild(label);
  if (S.kids[i] > 0 && S.collapsed.has(r[ID])) name.appendChild(el("span", "why", "(" + fmtInt(S.end[i] - i - 1) + " below)"));
  if (r[WHY]) name.appendChild(el("span", "why", "— " + r[WHY]));
  if (r[ERR]) name.title = r[ERR];
  d.appendChild(name);
  d.appendChild(el("span", "c-depth", String(r[DEPTH])));
  d.appendChild(el("span", "c-status", r[STATUS] + (r[SUMMARIZED] ? "*" : "")));
  d.appendChild(el("span", "c-tok", fmtInt(r[IN] + r[OUT])));
  d.appendChild(el("span", "c-cost", fmtCost(r[COST])));
  const lat = r[START] != null && r[END] != null ? r[END] - r[START] : null;
  d.appendChild(el("span", "c-lat", fmtLat(lat)));
  const tl = el("span", "c-time");
  if (r[START] != null) {
    const bar = el("span", "bar");
    const end = r[END] != null ? r[END] : S.t1;
    bar.style.left = (100 * r[START]) / S.t1 + "%";
    bar.style.width = Math.max(0, (100 * (end - r[START])) / S.t1) + "%";
    tl.appendChild(bar);
  }
  d.appendChild(tl);
  return d;
}

function render() {
  const vp = $("viewport");
  const first = Math.max(0, Math.floor(vp.scrollTop / ROW_H) - OVERSCAN);
  const count = Math.ceil(vp.clientHeight / ROW_H) + 2 * OVERSCAN;
  const last = Math.min(S.visible.length, first + count);
  const box = $("rows");
  box.style.transform = "translateY(" + first * ROW_H + "px)";
  const frag = document.createDocumentFragment();
  for (let k = first; k < last; k++) frag.appendChild(rowEl(S.visible[k]));
  box.replaceChildren(frag);
  window.__ta.renders += 1;
}

function renderSummary(body) {
  const s = body.summary;
  S.summary = s;
  $("mode").textContent = body.mode;
  $("mode").className = "badge " + body.mode;
  $("root-name").textContent = s.name;
  $("root-status").textContent = s.status;
  $("total-runs").textContent = fmtInt(s.counts.runs);
  const c = s.counts;
  $("counts").textContent = fmtInt(c.completed) + " done" + (c.failed ? ", " + fmtInt(c.failed) + " failed" : "") + (c.running ? ", " + fmtInt(c.running) + " running" : "");
  $("total-tokens").textContent = fmtInt(s.total_usage.input_tokens + s.total_usage.output_tokens);
  $("total-io").textContent = "(" + fmtInt(s.total_usage.input_tokens) + " in / " + fmtInt(s.total_usage.output_tokens) + " out)";
  $("total-cost").textContent = fmtCost(s.total_cost);
  $("total-latency").textContent = fmtLat(s.latency_us) || "–";
  $("max-depth").textContent = String(c.max_depth);
}

async function loadTree() {
  if (S.loading) { S.again = true; return; }
  S.loading = true;
  try {
    const t0 = performance.now();
    const [sum, tree] = await Promise.all([
      fetch("/api/summary").then((r) => r.json()),
      fetch("/api/tree").then((r) => r.json()),
    ]);
    if (sum.damage && sum.damage.length) {
      $("banner").hidden = false;
      $("banner").textContent = "This trace is damaged; showing what could be read: " + sum.damage.join("; ");
    }
    S.rows = tree.rows;
    S.t1 = Math.max(1, tree.t1);
    S.version = tree.version;
    index();
    computeVisible();
    renderSummary({ mode: sum.mode, summary: tree.summary });
    render();
    if (window.__ta.firstRenderMs == null) {
      window.__ta.firstRenderMs = performance.now();
      window.__ta.firstLoadMs = performance.now() - t0;
      document.body.dataset.ready = "1";
    }
    window.__ta.version = tree.version;
    document.body.dataset.version = String(tree.version);
    if (S.selected && S.summary) refreshSelected();
  } finally {
    S.loading = false;
    if (S.again) { S.again = false; setTimeout(loadTree, 50); }
  }
}

let selectSeq = 0;
async function select(id) {
  S.selected = id;
  render();
  const mine = ++selectSeq;
  const res = await fetch("/api/run/" + id);
  const body = await res.json();
  if (mine !== selectSeq) return;
  showDetail(id, res.ok ? body : null, res.ok ? null : body.error);
}

function refreshSelected() {
  if (S.mode !== "live") return;
  select(S.selected);
}

function showDetail(id, body, error) {
  $("detail-empty").hidden = true;
  const d = $("detail-body");
  d.hidden = false;
  // A live refresh of the same run keeps the last steering answer.
  const sameRun = d.dataset.id === id;
  d.dataset.id = id;
  if (!body) {
    $("d-name").textContent = "Error";
    $("d-fields").replaceChildren();
    $("d-error").hidden = false;
    $("d-error").textContent = error;
    return;
  }
  const n = body.node;
  $("d-name").textContent = n.name;
  const fields = [
    ["run", n.run_id], ["parent", n.parent_run_id || "—"], ["depth", n.depth], ["status", n.status + (n.paused && n.status === "running" ? " (paused)" : "") + (n.summarized ? " (summarized: only the parent's view was recorded)" : "")],
    ["tokens", fmtInt(body.total_usage.input_tokens + body.total_usage.output_tokens) + " (" + fmtInt(body.total_usage.input_tokens) + " in / " + fmtInt(body.total_usage.output_tokens) + " out)"],
    ["own tokens", fmtInt(n.usage.input_tokens + n.usage.output_tokens)],
    ["cost", fmtCost(body.total_cost)], ["latency", fmtLat(body.latency_us) || "–"],
    ["model", n.model || "–"], ["model calls", n.model_calls], ["tool calls", n.tool_calls], ["children", body.children], ["failures", n.failures],
  ];
  const tb = document.createDocumentFragment();
  for (const [k, v] of fields) {
    const tr = el("tr");
    tr.appendChild(el("td", null, k));
    const td = el("td", null, String(v));
    td.dataset.field = k;
    tr.appendChild(td);
    tb.appendChild(tr);
  }
  $("d-fields").replaceChildren(tb);
  $("d-error").hidden = !n.error;
  $("d-error").textContent = n.error || "";
  $("d-rationale").hidden = !n.rationale;
  $("d-rationale").textContent = n.rationale ? "Rationale: " + n.rationale : "";
  const tr = document.createDocumentFragment();
  if (!body.transcript.length) tr.appendChild(el("div", "muted", "No transcript recorded (record at the model_io detail level)."));
  for (const m of body.transcript) {
    const div = el("div", "msg " + m.role);
    div.appendChild(el("span", "role", m.role + (m.name ? " · " + m.name : "")));
    let text = m.content || "";
    if (m.tool_calls && m.tool_calls.length) text += (text ? "\n" : "") + m.tool_calls.map((c) => "→ " + c.name + " " + c.arguments).join("\n");
    div.appendChild(document.createTextNode(text));
    tr.appendChild(div);
  }
  $("transcript").replaceChildren(tr);
  const evs = document.createDocumentFragment();
  for (const e of body.records) evs.appendChild(el("div", "ev", JSON.stringify(e)));
  $("events").replaceChildren(evs);
  if (!sameRun) {
    $("steer-msg").textContent = S.steering ? "" : "steering not available";
    $("steer-msg").className = "";
  }
}

async function steer(action) {
  if (!S.selected) return;
  const msg = $("steer-msg");
  msg.className = "pending";
  msg.textContent = action + "…";
  const res = await fetch("/api/run/" + S.selected + "/" + action, { method: "POST" });
  const body = await res.json().catch(() => ({}));
  // Rejections (policy: 403, run ended: 409) are shown with their reason.
  msg.className = res.ok ? "ok" : "rejected";
  msg.textContent = res.ok ? body.message || "ok" : (res.status === 403 || res.status === 409 ? "rejected: " : "") + (body.error || res.statusText);
  msg.dataset.status = String(res.status);
}

function onRowsClick(ev) {
  const row = ev.target.closest(".row");
  if (!row || !row.dataset.id) return;
  const id = row.dataset.id;
  if (ev.target.dataset.toggle) {
    if (S.collapsed.has(id)) S.collapsed.delete(id); else S.collapsed.add(id);
    computeVisible();
    render();
    return;
  }
  select(id);
}

function init() {
  $("rows").addEventListener("click", onRowsClick);
  let pending = false;
  $("viewport").addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  });
  window.addEventListener("resize", render);
  for (const b of document.querySelectorAll("#steer button")) b.addEventListener("click", () => steer(b.dataset.action));
  fetch("/api/summary").then((r) => r.json()).then((s) => {
    S.mode = s.mode;
    S.steering = s.steering;
    for (const b of document.querySelectorAll("#steer button")) b.disabled = !s.steering;
    if (!s.steering) $("steer-msg").textContent = "steering not available";
    if (s.mode === "live") {
      const es = new EventSource("/api/updates");
      es.addEventListener("version", () => loadTree());
    }
  });
  loadTree();
}

init();
