// hoiforge view: list → filter → open a sample → toggle overlays. Plain JS, no dependencies.
// Everything shown comes from an OUT that may be someone else's: text goes into the page only
// through textContent / attributes set one by one, never as HTML (and the server's CSP forbids
// inline script anyway).
"use strict";

const $ = (id) => document.getElementById(id);
// An element with text and properties (className, src, ...), its children appended.
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};
const state = { page: 0, pages: 1, rows: [], current: null, sample: null };
const OVERLAYS = ["pose", "mask", "edge"];
const LABELS = { persons: "person boxes", products: "product boxes", text: "text boxes" };
const COLORS = { person: "#2ecc71", product: "#ff9f1c", removed: "#e63946", kept: "#4895ef" };

async function getJSON(url) {
  const r = await fetch(url);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}

function fillSelect(select, counts) {
  for (const [value, n] of Object.entries(counts || {})) {
    if (value === "(none)") continue;
    const o = document.createElement("option");
    o.value = value;
    o.textContent = `${value} (${n})`;
    select.appendChild(o);
  }
}

async function init() {
  const f = await getJSON("/api/facets");
  fillSelect($("f-status"), f.status);
  fillSelect($("f-stage"), f.stage);
  fillSelect($("f-reason"), f.reason);
  fillSelect($("f-label"), f.label);
  fillSelect($("f-split"), f.split);
  for (const name of f.scores) $("f-score").appendChild(Object.assign(document.createElement("option"), { value: name, textContent: name }));
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); state.page = 0; load(); });
  for (const id of ["f-status", "f-stage", "f-reason", "f-label", "f-split"]) $(id).addEventListener("change", () => { state.page = 0; load(); });
  $("prev").onclick = () => { if (state.page > 0) { state.page--; load(); } };
  $("next").onclick = () => { if (state.page < state.pages - 1) { state.page++; load(); } };
  // Random access: any page of millions is one request (the server slices its cached match list).
  $("goto").addEventListener("change", () => { state.page = Math.max(0, (parseInt($("goto").value, 10) || 1) - 1); load(); });
  $("close").onclick = closeDetail;
  $("prev-sample").onclick = () => step(-1);
  $("next-sample").onclick = () => step(1);
  for (const k of ["pose", "mask", "edge", "persons", "products", "text", "caption"]) $("t-" + k).addEventListener("change", render);
  $("base").addEventListener("load", render);
  await load();
}

function query() {
  const p = new URLSearchParams(new FormData($("filters")));
  for (const [k, v] of [...p]) if (!v) p.delete(k);
  p.set("page", state.page);
  return p.toString();
}

async function load() {
  const doc = await getJSON("/api/samples?" + query());
  Object.assign(state, { page: doc.page, pages: doc.pages, rows: doc.rows });
  $("pageinfo").textContent = `${doc.total.toLocaleString()} samples · page ${doc.page + 1} of ${doc.pages}`;
  $("pageinfo").dataset.total = doc.total;
  const grid = $("grid");
  grid.replaceChildren();
  for (const row of doc.rows) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.index = row.index;
    card.dataset.status = row.status;
    const why = row.status === "kept" ? [row.product_label, row.persons != null ? `${row.persons} person(s)` : ""].filter(Boolean).join(" · ") : `${row.stage}: ${row.reason || ""}`;
    const img = el("img", { loading: "lazy", alt: "", src: `/api/thumb/${Number(row.index)}` });
    img.onerror = () => { img.replaceWith(el("span", { textContent: "no image" })); };
    const badge = el("span", { className: "badge", textContent: row.status });
    if (["kept", "dropped", "failed"].includes(row.status)) badge.classList.add(row.status);
    card.append(
      el("div", { className: "thumb" }, img),
      el("div", { className: "meta" }, badge, " ", el("span", { className: "why", textContent: `#${row.index} ${why}` })),
    );
    card.onclick = () => openSample(row.index);
    grid.appendChild(card);
  }
}

function closeDetail() {
  $("detail").hidden = true;
  $("grid").hidden = false;
  state.current = null;
}

function step(delta) {
  const i = state.rows.findIndex((r) => r.index === state.current);
  const next = state.rows[i + delta];
  if (next) openSample(next.index);
}

async function openSample(index) {
  const s = await getJSON(`/api/sample/${index}`);
  state.current = index;
  state.sample = s;
  $("grid").hidden = true;
  $("detail").hidden = false;
  const row = s.manifest;
  $("title").textContent = `#${row.index} · ${row.status}` + (row.stage ? ` at ${row.stage}` : "");
  for (const k of OVERLAYS) { $("ov-" + k).removeAttribute("src"); $("ov-" + k).classList.remove("on"); }
  const base = $("base");
  if (s.image_ext) base.src = `/api/member/${index}/${s.image_ext}`;
  else if (s.source_readable) base.src = `/api/source/${index}`;
  else base.removeAttribute("src");
  base.hidden = !base.getAttribute("src");
  $("noimage").hidden = !base.hidden;
  $("noimage").textContent = "No image: the sample is not in the shards and its source is not readable here.";
  const table = $("row");
  table.replaceChildren();
  const extra = { wids_index: s.wids_index, members: Object.keys(s.members).join(", ") || "(none in shards)" };
  for (const [k, v] of Object.entries({ ...row, ...extra })) {
    if (v === null || v === undefined) continue;
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : String(v);
  }
  render();
}

// Overlays are global view settings: they stay on while paging; a sample without one says why.
function render() {
  const s = state.sample;
  if (!s) return;
  const row = s.manifest;
  const missing = [];
  for (const k of OVERLAYS) {
    const img = $("ov-" + k);
    const want = $("t-" + k).checked;
    const have = s.overlays.includes(k);
    if (want && have && !img.getAttribute("src")) img.src = `/api/overlay/${row.index}/${k}`;
    img.classList.toggle("on", want && have);
    if (want && !have) missing.push(`${k} overlay`);
  }
  drawBoxes(missing);
  const cap = s.caption || (s.annotation && s.annotation.caption && s.annotation.caption.text) || "";
  $("caption").textContent = $("t-caption").checked ? cap || (row.status === "kept" ? "(no caption in this build)" : "") : "";
  const notes = [];
  if (row.status !== "kept") notes.push(`${row.status} at ${row.stage}: ${row.reason || "no reason recorded"}. ` + (s.source_readable ? "Showing the source file." : "The source file is not readable here."));
  if (missing.length) {
    const why = row.status === "kept" ? "this build's recipe does not write it" : `${row.status} at ${row.stage}, so nothing of it is in the shards`;
    notes.push(`Not available (${why}): ${missing.join(", ")}.`);
  }
  $("notes").replaceChildren(...notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
}

function drawBoxes(missing) {
  const s = state.sample;
  const ann = s.annotation || {};
  const [ctx, w] = freshCanvas($("base"), $("boxes"), ann);
  const box = boxPainter(ctx, w);
  const layers = [
    ["persons", ann.persons, (p) => box(p.box, COLORS.person, `person ${(p.score ?? 0).toFixed(2)}`)],
    ["products", ann.products, (p) => box(p.box, COLORS.product, `${p.label} ${(p.score ?? 0).toFixed(2)}`)],
    ["text", ann.text_regions, (t) => box(t.box, t.action === "removed" ? COLORS.removed : COLORS.kept, `${t.action}: ${t.text}`, t.action !== "removed")],
  ];
  for (const [key, items, draw] of layers) {
    if (!$("t-" + key).checked) continue;
    if (items === undefined) {
      // Dropped/failed rows have no annotation: say so. A kept row without the stage just has no boxes.
      if (!s.annotation) missing.push(LABELS[key]);
      continue;
    }
    items.forEach(draw);
  }
}

init().catch((e) => { document.body.prepend(el("p", { className: "error", textContent: `error: ${e.message}` })); });
