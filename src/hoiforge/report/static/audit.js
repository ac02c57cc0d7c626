// hoiforge audit: one sample at a time, the stage's overlay, keys to mark it. Plain JS.
// Everything shown comes from an OUT that may be someone else's: text goes into the page only
// through textContent (never as HTML); the server's CSP forbids inline script anyway.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = { person: "#2ecc71", product: "#ff9f1c", removed: "#e63946", kept: "#4895ef", shoe: "#f72585" };
const state = { doc: null, pos: 0, sample: null, overlays: true, busy: false };
const key = (it) => `${it.index}:${it.status}`;

async function getJSON(url, options) {
  const r = await fetch(url, options);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}

const pct = (x) => (100 * x).toFixed(1) + " %";

function showSummary(summary) {
  const parts = [];
  for (const status of ["kept", "dropped"]) {
    const s = summary[status];
    if (!s) continue;
    const what = status === "kept" ? "precision" : "right drops";
    const span = document.createElement("span");
    span.className = "figure";
    span.dataset.status = status;
    span.dataset.precision = s.precision === null ? "" : s.precision.toFixed(4);
    span.dataset.reviewed = s.reviewed;
    span.textContent = s.reviewed
      ? `${status}: ${what} ${pct(s.precision)} (95 % CI ${pct(s.wilson95[0])}–${pct(s.wilson95[1])}) over ${s.reviewed} reviewed · est. ${s.estimated_wrong} wrong of ${s.population}`
      : `${status}: nothing judged yet`;
    for (const pair of s.agreement || []) {
      const k = pair.kappa === null ? "undefined" : pair.kappa.toFixed(2);
      span.textContent += ` · ${pair.reviewers.join(" / ")}: kappa ${k} over ${pair.both_answered} both answered`;
    }
    parts.push(span, " ");
  }
  $("live").replaceChildren(...parts);
}

function progress() {
  const d = state.doc;
  const done = d.items.filter((it) => d.answers[key(it)]).length;
  $("progress").textContent = `sample ${state.pos + 1} of ${d.items.length} · ${done} answered · reviewer ${d.reviewer} · seed ${d.seed}`;
  $("progress").dataset.answered = done;
}

async function init() {
  const d = await getJSON("/api/audit");
  state.doc = d;
  $("stage").textContent = d.stage + (d.split ? ` (${d.split})` : "");
  $("how").textContent = `${d.how} ${d.items.length} samples drawn (${Object.entries(d.population).map(([k, v]) => `${v} ${k}`).join(", ")} in the build). Answers are saved in OUT/${d.answers_file} after each mark.`;
  d.reasons.forEach((r, i) => {
    const li = document.createElement("li");
    li.textContent = r;
    li.onclick = () => mark("wrong", r);
    $("reasons").appendChild(li);
  });
  $("b-correct").onclick = () => mark("correct");
  $("b-wrong").onclick = () => mark("wrong");
  $("b-skip").onclick = () => mark("skip");
  $("base").addEventListener("load", draw);
  document.addEventListener("keydown", onKey);
  showSummary(d.summary);
  const first = d.items.findIndex((it) => !d.answers[key(it)]);
  await open(first < 0 ? 0 : first);
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  if (k === "c") mark("correct");
  else if (k === "w") mark("wrong");
  else if (k === "s") mark("skip");
  else if (/^[1-9]$/.test(k) && state.doc.reasons[Number(k) - 1]) mark("wrong", state.doc.reasons[Number(k) - 1]);
  else if (k === "ArrowRight") open(Math.min(state.pos + 1, state.doc.items.length - 1));
  else if (k === "ArrowLeft") open(Math.max(state.pos - 1, 0));
  else if (k === "n") nextUnanswered();
  else if (k === "o") { state.overlays = !state.overlays; draw(); }
  else return;
  e.preventDefault();
}

function nextUnanswered() {
  const items = state.doc.items;
  for (let step = 1; step <= items.length; step++) {
    const i = (state.pos + step) % items.length;
    if (!state.doc.answers[key(items[i])]) return open(i);
  }
  return open(Math.min(state.pos + 1, items.length - 1));
}

async function mark(verdict, reason) {
  if (state.busy || !state.sample) return;
  state.busy = true;
  try {
    const it = state.doc.items[state.pos];
    const doc = await getJSON("/api/audit/answer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ index: it.index, status: it.status, verdict, reason: reason || null }),
    });
    state.doc.answers[key(it)] = { verdict, reason: reason || null };
    $("saved").textContent = `saved: #${it.index} ${verdict}${reason ? " (" + reason + ")" : ""} at ${doc.saved.time}`;
    showSummary(doc.summary);
    state.busy = false;
    await nextUnanswered();
  } catch (e) {
    $("saved").textContent = `not saved: ${e.message}`;
  } finally {
    state.busy = false;
  }
}

async function open(pos) {
  const d = state.doc;
  const it = d.items[pos];
  state.pos = pos;
  const s = await getJSON(`/api/sample/${it.index}`);
  if (state.pos !== pos) return;
  state.sample = s;
  const row = s.manifest;
  const layers = d.layers;
  $("title").textContent = `#${row.index} · ${row.status}` + (row.status !== "kept" ? ` at ${row.stage}` : "") + (it.stratum !== null && d.stratified_by ? ` · ${d.stratified_by}: ${it.stratum}${it.stratum >= 5 ? "+" : ""}` : "");
  $("question").textContent = it.status === "kept" ? d.question : d.drop_question;
  $("note").textContent = it.status === "kept" ? "" : `Dropped: ${row.reason || "no reason recorded"}.` + (s.source_readable ? "" : " Its source is not readable here.");
  const base = $("base");
  for (const id of ["ov-mask", "ov-pose", "ov-layer"]) $(id).removeAttribute("src");
  if (s.image_ext) base.src = `/api/member/${row.index}/${s.image_ext}`;
  else if (s.source_readable) base.src = `/api/source/${row.index}`;
  else base.removeAttribute("src");
  if (layers.includes("mask") && s.overlays.includes("mask")) $("ov-mask").src = `/api/overlay/${row.index}/mask`;
  if (layers.includes("pose") && s.overlays.includes("pose")) $("ov-pose").src = `/api/overlay/${row.index}/pose`;
  const layer = layers.includes("shoes") ? "shoemask" : layers.includes("wear") ? "wear" : null;
  if (layer && s.members[layer + ".png"] !== undefined) $("ov-layer").src = `/api/audit/layer/${row.index}/${layer}`;
  // Cleanup: the source beside the cleaned image, so removed regions can be compared.
  const before = layers.includes("source") && it.status === "kept";
  $("before").hidden = !before;
  document.querySelector(".images").classList.toggle("with-before", before);
  if (before) $("source").src = `/api/source/${row.index}`;
  const cap = s.caption || (s.annotation && s.annotation.caption && s.annotation.caption.text) || "";
  $("caption").textContent = layers.includes("caption") ? cap || (it.status === "kept" ? "(no caption in this sample)" : "") : "";
  const a = d.answers[key(it)];
  $("verdict").textContent = a ? `your answer: ${a.verdict}${a.reason ? " — " + a.reason : ""}` : "not answered yet";
  $("verdict").className = a ? a.verdict : "";
  progress();
  draw();
}

function draw() {
  const s = state.sample;
  if (!s) return;
  for (const id of ["ov-mask", "ov-pose", "ov-layer"]) $(id).classList.toggle("on", state.overlays && !!$(id).getAttribute("src"));
  const ann = s.annotation || {};
  const [ctx, w] = freshCanvas($("base"), $("boxes"), ann);
  if (!state.overlays) return;
  const box = boxPainter(ctx, w);
  const num = (x) => (typeof x === "number" ? x.toFixed(2) : "");
  const layers = state.doc.layers;
  const list = (x) => (Array.isArray(x) ? x : []);
  if (layers.includes("persons") || layers.includes("pose")) list(ann.persons).forEach((p, i) => box(p.box, COLORS.person, `person ${i + 1} ${num(p.score)}`));
  if (layers.includes("products")) list(ann.products).forEach((p, i) => box(p.box, COLORS.product, `${i + 1} ${p.label} ${num(p.score)}`));
  if (layers.includes("text")) list(ann.text_regions).forEach((t) => box(t.box, t.action === "removed" ? COLORS.removed : COLORS.kept, `${t.action}: ${t.text}`, t.action !== "removed"));
  if (layers.includes("shoes")) list(ann.shoes).forEach((q) => box(q.box, COLORS.shoe, `${q.side || ""} shoe (person ${q.person})`));
}

init().catch((e) => { document.body.prepend(Object.assign(document.createElement("p"), { className: "error", textContent: `error: ${e.message}` })); });
