// pyflux-mnist's page: plain JavaScript, no libraries, no build step. Talks to the JSON API (docs/web.md).
"use strict";

const $ = (id) => document.getElementById(id);
let model = null; // the card of the model in use (GET /api/model)

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    return { ok: false, status: 0, body: { error: "the server cannot be reached (is pyflux-mnist serve still running?)" } };
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: `HTTP ${response.status}` }; }
  return { ok: response.ok, status: response.status, body };
}

const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(2)} %`);

// --- tabs ------------------------------------------------------------------------------------------------
// The tab shown is in the address (#draw, #photo, #inside, #train), so a reload stays where it was.
const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  const hash = `#${tab.id.slice(4)}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
  if (tab.id === "tab-inside") loadInside();
  if (tab.id === "tab-train") { loadOptions(); drawCurve(); }
}
tabs.forEach((t, i) => {
  t.addEventListener("click", () => selectTab(t));
  t.addEventListener("keydown", (e) => {
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault(); // End and Home would scroll the page
    const next = tabs[(to + tabs.length) % tabs.length];
    next.focus();
    selectTab(next);
  });
});

// --- the answer: big digit, bars ---------------------------------------------------------------------------
function showAnswer(prefix, result) {
  $(`${prefix}-answer`).textContent = result ? String(result.label) : "?";
  $(`${prefix}-confidence`).textContent = result ? `${pct(result.probabilities[result.label])} sure` : "";
  const bars = $(`${prefix}-bars`);
  bars.replaceChildren();
  if (!result) return;
  result.probabilities.forEach((p, d) => {
    const digit = document.createElement("span");
    digit.className = "d";
    digit.textContent = d;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(0, Math.min(100, 100 * p))}%`;
    fill.style.display = "block";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "p";
    value.textContent = p.toFixed(3);
    for (const el of [digit, track, value]) if (d === result.label) el.classList.add("top");
    bars.append(digit, track, value);
  });
  bars.setAttribute("aria-label", `probabilities: ${result.probabilities.map((p, d) => `${d}: ${p.toFixed(2)}`).join(", ")}`);
}

// --- Draw ---------------------------------------------------------------------------------------------------
const pad = $("pad");
const ctx = pad.getContext("2d");
let strokes = [];
let current = null;
const SEND_SIDE = 140;
// Ink smaller than this part of the pad's side is a dot or a tick, not a digit: ask for a larger one
// (blown up to MNIST's 20 px box, a dot becomes a disc the network reads as anything).
const SMALLEST = 0.2;

function paint() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 22;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of strokes) {
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    for (const [x, y] of s) ctx.lineTo(x, y);
    if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
    ctx.stroke();
  }
}

function where(e) {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  // Capture keeps a stroke that leaves the pad; a pointer the browser no longer tracks (a synthetic one)
  // cannot be captured, and the stroke must not be lost for it.
  try { pad.setPointerCapture(e.pointerId); } catch (err) { /* drawn without capture */ }
  current = [where(e)];
  strokes.push(current);
  paint();
  schedule();
});
pad.addEventListener("pointermove", (e) => {
  if (!current) return;
  current.push(where(e));
  paint();
  schedule();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!current) return;
    current = null;
    schedule(0);
  });
}
$("undo").addEventListener("click", () => { strokes.pop(); paint(); schedule(0); });
$("clear").addEventListener("click", () => { strokes = []; paint(); schedule(0); });

let timer = null;
let busy = false;
let again = false;
function schedule(delay = 120) {
  // Debounced: at most one request in flight; the newest drawing is always the last one sent.
  // body[data-draw-pending] is "1" until the answer shown is the current drawing's (tests wait on it).
  document.body.dataset.drawPending = "1";
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(() => { timer = null; predictDrawing(); }, delay);
}

function showSeen(png) {
  // No picture yet (nothing drawn, Clear, every stroke undone): no image at all, never a broken one.
  const seen = $("draw-seen");
  if (png) seen.src = png; else seen.removeAttribute("src");
  seen.closest("figure").hidden = !png;
}

function inkExtent() {
  const xs = strokes.flat().map((p) => p[0]), ys = strokes.flat().map((p) => p[1]);
  return Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)) / pad.width;
}

function pngBody(canvas) {
  // toDataURL and a decode here take 2-4 ms; canvas.toBlob takes about a second in Chromium without a GPU.
  const text = atob(canvas.toDataURL("image/png").split(",")[1]);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

async function predictDrawing() {
  if (busy) { again = true; return; }
  const small = strokes.length > 0 && inkExtent() < SMALLEST;
  if (strokes.length === 0 || small) {
    showAnswer("draw", null);
    showSeen(null);
    $("draw-error").textContent = small ? "Draw larger: make the digit fill most of the square." : "";
    settled();
    return;
  }
  busy = true;
  // Sent at 140×140 (5 × 28): the server's preprocessing is the same, and half the side is a quarter the work.
  const shrunk = document.createElement("canvas");
  shrunk.width = shrunk.height = SEND_SIDE;
  shrunk.getContext("2d").drawImage(pad, 0, 0, SEND_SIDE, SEND_SIDE);
  const r = await api("/api/predict?drawing=1&name=your%20drawing", {
    method: "POST", headers: { "Content-Type": "image/png" }, body: pngBody(shrunk),
  });
  busy = false;
  if (again) { again = false; predictDrawing(); return; }
  if (r.ok) {
    showAnswer("draw", r.body);
    showSeen(r.body.steps[r.body.steps.length - 1].png);
    $("draw-error").textContent = "";
  } else {
    showAnswer("draw", null);
    showSeen(null);
    $("draw-error").textContent = r.body.error;
  }
  settled();
}

function settled() {
  if (timer === null && !busy) document.body.dataset.drawPending = "0";
}

// --- Photo --------------------------------------------------------------------------------------------------
const drop = $("drop");
$("photo-file").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });
// Enter opens the chooser too (a file input answers only Space by itself).
$("photo-file").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); e.target.click(); } });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
});

async function upload(file) {
  const preview = $("photo-preview");
  $("photo-steps").replaceChildren();
  if (file.type && !file.type.startsWith("image/")) { // said here, before a broken preview or a request
    preview.hidden = true;
    showAnswer("photo", null);
    $("photo-error").textContent = `${file.name} is not an image (PNG, JPEG, …)`;
    return;
  }
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `your photo: ${file.name}`;
  preview.hidden = false;
  preview.onerror = () => { preview.hidden = true; }; // the server says why, in words
  $("photo-error").textContent = "";
  $("photo-answer").textContent = "…";
  const r = await api(`/api/predict?strip=1&name=${encodeURIComponent(file.name)}`, {
    method: "POST",
    headers: { "Content-Type": file.type || "application/octet-stream" },
    body: file,
  });
  if (!r.ok) {
    showAnswer("photo", null);
    preview.hidden = true;
    $("photo-error").textContent = r.body.error;
    return;
  }
  showAnswer("photo", r.body);
  // The strip already ends with the 28×28; without one (a drawing-like picture), the 28×28 alone.
  const strips = r.body.steps.filter((step) => step.kind === "strip");
  preview.hidden = strips.length > 0; // the strip starts with the photo itself
  for (const step of strips.length ? strips : r.body.steps) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = step.png;
    img.alt = step.name;
    fig.className = step.kind === "strip" ? "strip scroll-wide" : step.kind;
    if (step.kind === "digit") img.width = 112;
    const cap = document.createElement("figcaption");
    cap.textContent = step.name;
    fig.append(img, cap);
    $("photo-steps").append(fig);
  }
}

// --- the model in use: told by the live channel (GET /api/live) on connect and at every switch --------------
function showModel(card) {
  const switched = model !== null && model.version !== card.version;
  model = card;
  document.body.dataset.modelVersion = model.version;
  $("model-line").textContent =
    `model: ${model.label} (${model.sizes.join("-")}) · ${model.backend ?? "?"} · test accuracy ${pct(model.test_accuracy)}`;
  if (!$("panel-inside").hidden) loadInside();
  if (switched && strokes.length) schedule(0); // the drawing, read again by the new network
}

// --- Look inside --------------------------------------------------------------------------------------------
let insideVersion = null;
function loadInside() {
  if (!model || insideVersion === model.version) return;
  insideVersion = model.version;
  const layers = model.sizes.map((n, i) => (i === 0 ? n : `${n} ${model.activations[i - 1]}`)).join(" → ");
  const rows = [
    ["recipe", model.label], ["layers", layers], ["parameters", model.parameters.toLocaleString("en")],
    ["backend", model.backend ?? "?"], ["steps", model.steps ?? "?"], ["seed", model.seed ?? "?"],
    ["train accuracy", pct(model.train_accuracy)], ["test accuracy", pct(model.test_accuracy)],
    ["final loss", model.final_loss == null ? "–" : model.final_loss.toFixed(4)],
    ["trained", `${model.trained_at || "unknown"} (${model.source})`],
  ];
  $("card").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
  // The figures come from the card (names, captions), so the page lists no picture of its own.
  const said = new Set(); // a reason shared by two pictures (no MNIST files) is said once
  $("pictures").replaceChildren(...model.pictures.map((pic) => {
    const fig = document.createElement("figure");
    if (pic.wide) fig.className = "scroll-wide"; // numbers inside that need width on a phone
    const img = document.createElement("img");
    img.id = `pic-${pic.name}`;
    img.alt = pic.alt;
    const cap = document.createElement("figcaption");
    cap.textContent = pic.caption;
    fig.append(img, cap);
    const url = `/api/pictures/${pic.name}.png?v=${model.version}`;
    const version = model.version;
    img.onerror = async () => {
      const r = await api(url);
      if (version !== model.version) return;
      img.hidden = true;
      const p = document.createElement("p");
      p.className = "missing";
      p.textContent = said.has(r.body.error) ? "not shown: the same reason as above" : r.body.error;
      said.add(r.body.error);
      img.after(p);
    };
    img.src = url;
    return fig;
  }));
}

// --- Train --------------------------------------------------------------------------------------------------
let options = null;
let job = null; // the run shown: {id, points: [[step, loss]], total, running, recipe, backend}
async function loadOptions() {
  if (options) return;
  const r = await api("/api/train/options");
  if (!r.ok) { $("train-status").textContent = r.body.error; return; }
  options = r.body;
  const recipe = $("recipe");
  recipe.replaceChildren(...options.recipes.map((rc) => new Option(`${rc.name} (${rc.sizes.join("-")})`, rc.name)));
  recipe.value = options.default;
  fillBackends();
  if (job) showForm(job.run);
}
$("recipe").addEventListener("change", fillBackends);

function fillBackends() {
  const rc = options.recipes.find((x) => x.name === $("recipe").value);
  const select = $("backend");
  const previous = select.value;
  select.replaceChildren(...rc.backends.map((b) => {
    const o = new Option(b.reason ? `${b.name} (unavailable)` : b.name, b.name);
    o.disabled = b.reason !== null;
    return o;
  }));
  const usable = rc.backends.filter((b) => b.reason === null).map((b) => b.name);
  select.value = usable.includes(previous) ? previous : (usable[0] ?? "");
  $("start").disabled = usable.length === 0 || Boolean(job && job.running) || submitting;
  $("backend-notes").replaceChildren(...rc.backends.filter((b) => b.reason).map((b) => {
    const li = document.createElement("li");
    li.textContent = `${b.name}: ${b.reason}`;
    return li;
  }));
  $("steps").placeholder = `${rc.total_steps} (recipe's)`;
  $("steps-hint").textContent = rc.epochs
    ? `the recipe's ${rc.epochs} epoch${rc.epochs === 1 ? "" : "s"} of batch ${rc.batch_size}: ${rc.total_steps} steps`
    : `the recipe's ${rc.total_steps} steps`;
}

function showForm(run) {
  // The form shows the run going (after a reload, or in another tab), not the defaults.
  if (!options || !options.recipes.some((rc) => rc.name === run.recipe)) return;
  $("recipe").value = run.recipe;
  fillBackends();
  $("backend").value = run.backend;
  $("steps").value = run.steps ?? "";
  $("seed").value = run.seed ?? 0;
}

let submitting = false;
$("train-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (submitting || (job && job.running)) return; // a double click is one run, never a 409
  submitting = true;
  $("start").disabled = true;
  const spec = { recipe: $("recipe").value, backend: $("backend").value };
  const steps = $("steps").value.trim();
  const seed = $("seed").value.trim();
  if (steps) spec.steps = Number(steps);
  if (seed) spec.seed = Number(seed);
  const r = await api("/api/train", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(spec),
  });
  submitting = false;
  if (!r.ok) {
    $("train-status").textContent = r.body.error;
    $("start").disabled = Boolean(job && job.running);
    $("start").focus();
    return;
  }
  if (!job || job.id !== r.body.id) showRun({ ...r.body, reset: true }); // unless the live channel was first
  $("stop").focus(); // where the next thing to do is
});

$("stop").addEventListener("click", async () => {
  const r = await api("/api/train/stop", { method: "POST" });
  $("train-status").textContent = r.ok ? "stopping at the next step…" : r.body.error;
});

function showRun(s) {
  // One run's state from the live channel (or the answer to Start): its points arrive once each.
  if (s.state === "idle") return;
  const fresh = !job || s.id !== job.id;
  if (fresh) {
    job = { id: s.id, points: [], total: s.total, running: s.running, recipe: s.recipe, backend: s.backend, run: s };
    showForm(s);
  }
  if (fresh || s.reset) job.points = s.points.slice(); else job.points.push(...s.points);
  job.total = s.total || job.total;
  const wasRunning = job.running;
  job.running = s.running;
  const stopFocused = document.activeElement === $("stop");
  $("start").disabled = s.running || submitting;
  $("stop").disabled = !s.running;
  document.body.dataset.training = s.running ? "running" : s.state;
  if (s.total) {
    $("train-progress").max = s.total;
    $("train-progress").value = s.step;
  }
  if (s.state === "starting") {
    $("train-status").textContent = `starting ${s.recipe} on ${s.backend} (loading the data)…`;
  } else if (s.state === "running") {
    $("train-status").textContent =
      `${s.recipe} on ${s.backend}: step ${s.step} of ${s.total}, loss ${s.loss.toFixed(4)} (${s.seconds} s)`;
  } else if (s.state === "done") {
    $("train-status").textContent = `done in ${s.seconds} s: ${s.message} (version ${s.model_version}).`;
  } else {
    $("train-status").textContent = `${s.state}: ${s.message}`;
  }
  if (wasRunning && !s.running && (stopFocused || document.activeElement === document.body)) $("start").focus();
  drawCurve();
}

// --- the live channel -------------------------------------------------------------------------------------
function listen() {
  const live = new EventSource("/api/live");
  live.addEventListener("model", (e) => showModel(JSON.parse(e.data)));
  live.addEventListener("training", (e) => showRun(JSON.parse(e.data)));
  live.addEventListener("open", () => { document.body.dataset.live = "open"; });
  // EventSource reconnects by itself (a restarted server); the first events then tell the present again.
  live.addEventListener("error", () => {
    document.body.dataset.live = "lost";
    if (!model) $("model-line").textContent = "the server cannot be reached (is pyflux-mnist serve still running?)";
  });
}

function nice(x) {
  // The round step (1, 2 or 5 times a power of ten) nearest above x: axis ticks people can read.
  const e = Math.pow(10, Math.floor(Math.log10(x)));
  const f = x / e;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
}

function drawCurve() {
  // Drawn at the size it is shown (text stays 16 px on a phone and on a projector).
  const c = $("curve");
  const W = c.clientWidth || 800, H = Math.max(240, Math.round(W * 0.45)), L = 70, R = 20, T = 40, B = 50;
  const ratio = window.devicePixelRatio || 1;
  c.width = Math.round(W * ratio);
  c.height = Math.round(H * ratio);
  const g = c.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, W, H);
  g.fillStyle = "#1b1b1b";
  g.font = `bold ${W < 500 ? 15 : 20}px system-ui, sans-serif`;
  g.textAlign = "center";
  g.fillText(job ? `training loss: ${job.recipe} on ${job.backend}` : "training loss", W / 2, 26);
  const pts = job ? job.points : [];
  c.dataset.points = String(pts.length);
  const xstep = Math.max(1, nice(Math.max(1, job ? job.total : 1, ...pts.map((p) => p[0])) / 5));
  const xmax = xstep * Math.ceil(Math.max(1, job ? job.total : 1, ...pts.map((p) => p[0])) / xstep);
  // Before any point, the scale of a first loss (ln 10 = 2.3 for ten digits), not of nothing.
  const top = pts.length ? Math.max(...pts.map((p) => p[1])) : 2.5;
  const ystep = nice(Math.max(1e-6, top) / 4);
  const ymax = ystep * Math.ceil(Math.max(1e-6, top) / ystep);
  const digits = Math.max(0, -Math.floor(Math.log10(ystep)));
  const x = (s) => L + ((W - L - R) * s) / xmax;
  const y = (v) => H - B - ((H - T - B) * v) / ymax;
  g.strokeStyle = "#888";
  g.lineWidth = 1;
  g.font = "16px system-ui, sans-serif";
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B); g.stroke();
  g.textAlign = "right";
  const yticks = [];
  for (let v = 0; v <= ymax + ystep / 2; v += ystep) yticks.push(v.toFixed(digits));
  yticks.forEach((t) => g.fillText(t, L - 8, y(Number(t)) + 5));
  c.dataset.yticks = yticks.join(" ");
  g.textAlign = "center";
  for (let s = 0; s <= xmax + xstep / 2; s += xstep) g.fillText(String(Math.round(s)), x(s), H - B + 22);
  g.fillText("step", (L + W - R) / 2, H - 8);
  g.save(); g.translate(18, (T + H - B) / 2); g.rotate(-Math.PI / 2); g.fillText("loss", 0, 0); g.restore();
  if (!pts.length) return;
  g.strokeStyle = "#c4410c";
  g.lineWidth = 3;
  g.beginPath();
  pts.forEach(([s, v], i) => (i ? g.lineTo(x(s), y(v)) : g.moveTo(x(s), y(v))));
  g.stroke();
}

window.addEventListener("resize", () => { if (!$("panel-train").hidden) drawCurve(); });

// --- start ----------------------------------------------------------------------------------------------------
paint();
showSeen(null);
drawCurve();
listen();
selectTab(tabs.find((t) => `#${t.id.slice(4)}` === location.hash) ?? tabs[0]);
