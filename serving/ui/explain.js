// The explainer page: rank with POST /v1/rank, explain one candidate with POST /v1/explain, draw with plain SVG.
// No build step, no library, nothing fetched from elsewhere. Every value from the service is set as text, never
// as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const KIND_COLOURS = { item: "var(--item)", soft: "var(--soft)", category: "var(--category)" };
const LANES_OF_GSU = { hard: ["category"], soft: ["soft"], hybrid: ["item", "soft", "category"], none: [] };
const $ = (id) => document.getElementById(id);
let current = null; // {request: the rank body as sent, candidates: [{item_id, category_id?}]}

function api(path) {
  return new URL("../" + path, window.location.href).toString(); // the page lives at /ui/
}

async function post(path, body) {
  const headers = { "content-type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers.authorization = "Bearer " + token;
  const response = await fetch(api(path), { method: "POST", headers, body: JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch (_) { /* not JSON: reported below */ }
  if (!response.ok) {
    const message = data && data.message ? data.message : text || response.statusText;
    throw new Error(`${path}: ${response.status} ${message}`);
  }
  return data;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function status(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

// -- the request ---------------------------------------------------------------------------------------------------

function candidatesFromText(text) {
  const out = [];
  text.split(/\n/).forEach((line, i) => {
    const parts = line.trim().split(/[\s,:;]+/).filter(Boolean);
    if (!parts.length) return;
    if (parts.length > 2 || !parts.every((p) => /^\d+$/.test(p))) {
      throw new Error(`candidates, line ${i + 1}: expected "item_id" or "item_id category_id", got "${line.trim()}"`);
    }
    const c = { item_id: Number(parts[0]) };
    if (parts.length === 2) c.category_id = Number(parts[1]);
    out.push(c);
  });
  if (!out.length) throw new Error("candidates: give at least one");
  return out;
}

function candidatesOf(body) {
  if (Array.isArray(body.candidates)) return body.candidates;
  if (Array.isArray(body.item_ids)) {
    const cats = Array.isArray(body.category_ids) ? body.category_ids : [];
    return body.item_ids.map((item_id, i) => (cats[i] == null ? { item_id } : { item_id, category_id: cats[i] }));
  }
  return [];
}

function buildRequest() {
  const pasted = $("request-json").value.trim();
  if (pasted) {
    let body;
    try { body = JSON.parse(pasted); } catch (e) { throw new Error(`the pasted request is not JSON: ${e.message}`); }
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Error("the pasted request must be a JSON object");
    return body;
  }
  const body = { user_id: $("user").value.trim(), candidates: candidatesFromText($("candidates").value), explore: false };
  const topN = $("top-n").value.trim();
  if (topN) body.top_n = Number(topN);
  return body;
}

// -- ranking -------------------------------------------------------------------------------------------------------

async function rank(event) {
  event.preventDefault();
  let body;
  try { body = buildRequest(); } catch (e) { status(e.message, true); return; }
  $("rank").disabled = true;
  status("Ranking…");
  try {
    const ranked = await post("v1/rank", body);
    current = { request: body, candidates: candidatesOf(body) };
    showRanking(ranked);
    status(`Ranked ${current.candidates.length} candidates for user ${body.user_id}.`);
  } catch (e) {
    status(e.message, true);
  } finally {
    $("rank").disabled = false;
  }
}

function categoryOf(itemId) {
  const c = current.candidates.find((x) => x.item_id === itemId);
  return c && c.category_id != null ? c.category_id : null;
}

function showRanking(ranked) {
  $("model").textContent = `model ${ranked.model_version}`;
  $("ranking-meta").textContent = ranked.degraded ? "degraded: the history could not be read" : "";
  const tbody = $("ranked").querySelector("tbody");
  tbody.replaceChildren();
  const best = Math.max(...ranked.items.map((i) => i.score), 1e-9);
  for (const item of ranked.items) {
    const row = el("tr", { "data-item-id": item.item_id, "data-pctr": item.pctr, "data-score": item.score });
    const category = categoryOf(item.item_id);
    row.append(el("td", {}, item.rank), el("td", {}, item.item_id), el("td", {}, category == null ? "–" : category));
    row.append(el("td", { class: "num" }, item.score.toFixed(4)));
    const bar = el("td");
    bar.append(el("span", { class: "bar", style: `width:${Math.round(80 * item.score / best)}px` }));
    if (item.explored) bar.append(" ", el("span", { class: "badge", title: "ranked by its explored score" }, "explored"));
    row.append(bar);
    row.addEventListener("click", () => explainItem(item.item_id, row));
    tbody.append(row);
  }
  $("ranking").hidden = false;
  $("explanation").hidden = true;
}

// -- one explanation -----------------------------------------------------------------------------------------------

async function explainItem(itemId, row) {
  for (const r of $("ranked").querySelectorAll("tbody tr")) r.classList.toggle("selected", r === row);
  const candidate = { item_id: itemId };
  const category = categoryOf(itemId);
  if (category != null) candidate.category_id = category;
  status(`Explaining item ${itemId}…`);
  try {
    const out = await post("v1/explain", { user_id: current.request.user_id, candidates: [candidate] });
    showExplanation(out);
    status(`Explained item ${itemId} for user ${current.request.user_id}.`);
  } catch (e) {
    status(e.message, true);
  }
}

function age(seconds) {
  const units = [[365 * 86400, "y"], [86400, "d"], [3600, "h"], [60, "min"]];
  for (const [size, name] of units) if (seconds >= size) return `${(seconds / size).toFixed(seconds >= 10 * size ? 0 : 1)} ${name}`;
  return `${seconds} s`;
}

function date(ts) {
  return new Date(ts * 1000).toISOString().slice(0, 10);
}

function showExplanation(out) {
  const item = out.items[0];
  $("model").textContent = `model ${out.model_version} · ${out.variant} · GSU ${out.gsu}`;
  $("ex-title").textContent = `Item ${item.item_id}` + (item.category_id == null ? "" : ` · category ${item.category_id}`)
    + (out.degraded ? " · degraded (history unreadable)" : "");
  summary(out, item);
  timeline(out, item);
  retrievedTable(item);
  shortTable(out, item);
  statsTable(item);
  $("explanation").hidden = false;
}

function summary(out, item) {
  const box = $("ex-summary");
  box.replaceChildren();
  const figure = (id, label, value, cls = "") => {
    const d = el("div");
    d.append(el("div", { class: "muted" }, label), el("div", { id, class: `figure ${cls}` }, value));
    return d;
  };
  const delta = item.long_contribution;
  box.append(
    figure("ex-pctr", "pCTR", item.pctr.toFixed(4)),
    figure("ex-short-only", `with only the last ${out.history.short_len} behaviours`, item.score_short_only.toFixed(4)),
    figure("ex-long", "the long history adds", (delta >= 0 ? "+" : "−") + Math.abs(delta).toFixed(4), delta >= 0 ? "up" : "down"),
    figure("ex-length", "behaviours in the history", out.history.length.toLocaleString("en")),
    figure("ex-retrieved", "retrieved by the GSU", item.retrieved.length),
  );
}

function timeline(out, item) {
  const box = $("timeline");
  box.replaceChildren();
  const h = out.history;
  const kinds = [...new Set([...(LANES_OF_GSU[out.gsu] || []), ...item.retrieved.map((b) => b.kind)])];
  const lanes = ["density", ...kinds, "short"];
  const W = 1000, left = 118, right = 14, top = 8, laneH = 34, axisH = 26;
  const H = top + lanes.length * laneH + axisH;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "history timeline" });
  const n = Math.max(h.length, 1);
  const x = (pos) => left + (W - left - right) * (pos / n);
  const laneY = (name) => top + lanes.indexOf(name) * laneH;

  lanes.forEach((name, i) => {
    const y = top + i * laneH;
    root.append(svg("line", { x1: left, x2: W - right, y1: y + laneH, y2: y + laneH, stroke: "#eef0f4" }));
    const label = name === "density" ? `category ${item.category_id ?? "–"}` : name === "short" ? "short-term (DIN)" : `${name} search`;
    root.append(svg("text", { x: left - 8, y: y + laneH / 2 + 4, "text-anchor": "end" }, label));
  });
  // the short window
  if (h.length) {
    root.append(svg("rect", { x: x(h.short_start), y: top, width: Math.max(1, x(h.length) - x(h.short_start)),
      height: lanes.length * laneH, fill: "var(--short)", opacity: 0.07 }));
  }
  // the candidate's category over the whole history
  const edges = h.bins.position, density = item.category_density;
  const most = Math.max(1, ...density);
  density.forEach((count, b) => {
    if (!count) return;
    const bh = (laneH - 8) * count / most;
    const bar = svg("rect", { class: "density-bar", x: x(edges[b]), y: laneY("density") + laneH - 2 - bh,
      width: Math.max(1, x(edges[b + 1]) - x(edges[b]) - 0.5), height: bh, fill: "var(--density)" });
    bar.append(svg("title", {}, `${count} behaviours of category ${item.category_id} at positions ${edges[b]}–${edges[b + 1] - 1}`));
    root.append(bar);
  });
  // retrieved behaviours, sized by attention
  const maxAtt = Math.max(1e-9, ...item.retrieved.map((b) => b.attention || 0));
  const byAttention = [...item.retrieved].sort((a, b) => (a.attention || 0) - (b.attention || 0)); // biggest on top
  for (const b of byAttention) {
    const r = 2.5 + 10 * Math.sqrt((b.attention || 0) / maxAtt);
    const dot = svg("circle", { class: "retrieved-dot", "data-slot": b.slot, "data-position": b.position,
      cx: x(b.position + 0.5), cy: laneY(b.kind) + laneH / 2, r: r.toFixed(2), fill: KIND_COLOURS[b.kind] || "#888",
      "fill-opacity": 0.55, stroke: KIND_COLOURS[b.kind] || "#888" });
    dot.append(svg("title", {}, `item ${b.item_id} · category ${b.category_id} · action ${b.action} · ${age(b.age_s)} ago`
      + ` · position ${b.position} · ${b.kind} search · attention ${b.attention == null ? "–" : b.attention.toFixed(3)}`));
    root.append(dot);
  }
  // the short window's behaviours, sized by the short branch's attention
  const weights = item.short_attention;
  const maxW = weights ? Math.max(1e-9, ...weights) : 1;
  h.short.forEach((b, j) => {
    const w = weights ? weights[j] : null;
    const r = w == null ? 2 : 1.5 + 7 * Math.sqrt(w / maxW);
    const dot = svg("circle", { class: "short-dot", cx: x(b.position + 0.5), cy: laneY("short") + laneH / 2,
      r: r.toFixed(2), fill: "var(--short)", "fill-opacity": 0.5 });
    dot.append(svg("title", {}, `item ${b.item_id} · category ${b.category_id} · action ${b.action} · position ${b.position}`
      + (w == null ? "" : ` · weight ${w.toFixed(3)}`)));
    root.append(dot);
  });
  // axis: positions and dates
  const axisY = top + lanes.length * laneH;
  root.append(svg("line", { x1: left, x2: W - right, y1: axisY, y2: axisY, stroke: "#98a2b3" }));
  const ticks = Math.min(6, edges.length);
  for (let t = 0; t < ticks; t++) {
    const e = Math.round(t * (edges.length - 1) / Math.max(1, ticks - 1));
    const px = x(edges[e]);
    root.append(svg("line", { x1: px, x2: px, y1: axisY, y2: axisY + 4, stroke: "#98a2b3" }));
    const label = h.bins.ts.length ? `${date(h.bins.ts[e])} · #${edges[e]}` : `#${edges[e]}`;
    const anchor = t === 0 ? "start" : t === ticks - 1 ? "end" : "middle";
    root.append(svg("text", { x: px, y: axisY + 17, "text-anchor": anchor }, label));
  }
  box.append(root);

  const legend = $("legend");
  legend.replaceChildren();
  const key = (colour, text) => { const s = el("span"); const i = el("i"); i.style.background = colour; s.append(i, text); return s; };
  legend.append(key("var(--density)", `the candidate's category over the whole history (${h.length} behaviours, oldest left)`));
  for (const k of kinds) legend.append(key(KIND_COLOURS[k], `found by ${k} search (size: ESU attention)`));
  legend.append(key("var(--short)", `the last ${h.short_len} behaviours (size: short-term attention)`));
}

function headBars(values) {
  const root = svg("svg", { width: 8 * values.length, height: 14 });
  const most = Math.max(1e-9, ...values);
  values.forEach((v, i) => {
    const bh = 12 * v / most;
    const bar = svg("rect", { x: i * 8, y: 13 - bh, width: 6, height: Math.max(0.5, bh), fill: "var(--accent)" });
    bar.append(svg("title", {}, `head ${i + 1}: ${v.toFixed(3)}`));
    root.append(bar);
  });
  return root;
}

function retrievedTable(item) {
  const tbody = $("retrieved").querySelector("tbody");
  tbody.replaceChildren();
  const rows = [...item.retrieved].sort((a, b) => (b.attention || 0) - (a.attention || 0));
  for (const b of rows) {
    const tr = el("tr", { "data-slot": b.slot });
    const kind = el("td");
    kind.append(el("span", { class: `kind kind-${b.kind}` }, b.kind + (b.same_item ? " · same item" : "")));
    const heads = el("td", { class: "heads" });
    heads.append(headBars(b.attention_heads));
    tr.append(el("td", {}, b.slot), el("td", {}, b.item_id), el("td", {}, b.category_id), kind, el("td", {}, b.action),
      el("td", { title: date(b.ts) }, age(b.age_s)), el("td", { class: "num" }, b.attention == null ? "–" : b.attention.toFixed(3)), heads);
    tbody.append(tr);
  }
  $("retrieved-empty").hidden = rows.length > 0;
}

function shortTable(out, item) {
  const tbody = $("short").querySelector("tbody");
  tbody.replaceChildren();
  const weights = item.short_attention;
  out.history.short.map((b, j) => [b, weights ? weights[j] : null]).reverse().forEach(([b, w]) => {
    const tr = el("tr");
    const cell = el("td", { class: "num" }, w == null ? "–" : w.toFixed(3));
    tr.append(el("td", {}, b.position), el("td", {}, b.item_id), el("td", {}, b.category_id), el("td", {}, b.action), cell);
    tbody.append(tr);
  });
}

function statsTable(item) {
  const tbody = $("stats").querySelector("tbody");
  tbody.replaceChildren();
  const entries = Object.entries(item.stats);
  for (const [name, value] of entries) {
    const tr = el("tr", { "data-name": name });
    tr.append(el("td", {}, name), el("td", { class: "num" }, Number(value).toFixed(3)));
    tbody.append(tr);
  }
  $("stats-empty").hidden = entries.length > 0;
}

$("rank-form").addEventListener("submit", rank);
