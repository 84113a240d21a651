// corrkit explore: the page. Plain JavaScript, nothing loaded from the network.
//
// Every request carries the code, so the server keeps no state per page. Slider moves are
// coalesced: while a render is in flight, moves only update the wanted state, and when the
// answer arrives the latest state is sent (one request at a time, never a queue).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null, cls: 0, source: null, rows: [], values: {}, chosen: null, code: null, codeLabel: "",
  seed: 0, probs: null, edited: null,
};
// What the browser test reads: latencies from slider event to drawn image (ms), renders done, errors shown.
window.corrkit = { latencies: [], renders: 0, strips: 0, lastError: null, state };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  window.corrkit.lastError = message;
}

function clearError() { $("error").hidden = true; }

async function api(path, options) {
  const r = await fetch(path, options);
  const type = r.headers.get("content-type") || "";
  if (!r.ok) {
    let message = `${r.status} ${r.statusText}`;
    if (type.includes("json")) message = (await r.json()).error || message;
    throw new Error(message);
  }
  return type.includes("json") ? r.json() : r.blob();
}

const post = (path, body) => api(path, {
  method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
});

function sliders() {
  return state.rows.map((r) => ({ index: r.index, value: state.values[r.index] || 0 }))
    .filter((s) => s.value !== 0);
}

// -- drawing ----------------------------------------------------------------------------------------------------

function imageCanvas(frame) {
  const { width, height, channels } = frame;
  const bytes = Uint8Array.from(atob(frame.pixels), (c) => c.charCodeAt(0));
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = bytes[p * channels + (channels === 1 ? 0 : c)];
    rgba[4 * p + 3] = channels === 4 ? bytes[p * channels + 3] : 255;
  }
  const off = document.createElement("canvas");
  off.width = width; off.height = height;
  off.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  return off;
}

function drawImage(frame) {
  const canvas = $("image");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const off = imageCanvas(frame);
  const s = Math.min(canvas.width / off.width, canvas.height / off.height);
  const w = off.width * s, h = off.height * s;
  ctx.drawImage(off, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
}

function drawBars(probs) {
  const box = $("bars");
  if (box.children.length !== probs.length) {
    box.textContent = "";
    state.info.classes.forEach((name, j) => {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span>' +
        '<span class="value"></span>';
      bar.querySelector(".name").textContent = name;
      bar.dataset.class = j;
      box.appendChild(bar);
    });
  }
  probs.forEach((p, j) => {
    const bar = box.children[j];
    bar.classList.toggle("own", j === state.cls);
    bar.dataset.prob = p;
    bar.querySelector(".fill").style.width = `${(100 * p).toFixed(2)}%`;
    bar.querySelector(".value").textContent = p.toFixed(3);
  });
}

function drawStrip(s) {
  const canvas = $("strip");
  const n = s.frames.length, cell = n > 9 ? 64 : 80, pad = 6, text = 36;
  canvas.width = n * (cell + pad) + pad;
  canvas.height = cell + 2 * pad + text;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#333";
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "center";
  s.frames.forEach((f, i) => {
    const off = imageCanvas(f);
    const x = pad + i * (cell + pad);
    const sc = Math.min(cell / off.width, cell / off.height);
    ctx.drawImage(off, x + (cell - off.width * sc) / 2, pad, off.width * sc, off.height * sc);
    ctx.fillText(`${s.ks[i] >= 0 ? "+" : ""}${s.ks[i].toFixed(2)}`, x + cell / 2, cell + pad + 14);
    ctx.fillText(`p=${s.own[i].toFixed(3)}`, x + cell / 2, cell + pad + 30);
  });
  const row = state.rows.find((r) => r.index === s.index);
  $("strip-title").textContent = `traversal of ${row ? row.label : s.index}: S(${state.info.classes[s.class]}) ` +
    "under each frame";
}

// -- coalesced requests -----------------------------------------------------------------------------------------

function coalesced(send) {
  // At most one request in flight; a call while one is out marks it dirty, and the latest state goes next.
  let busy = false, dirty = false, since = null;
  return async function run(eventTime) {
    if (eventTime !== undefined) since = eventTime;
    if (busy) { dirty = true; return; }
    busy = true;
    try {
      do {
        dirty = false;
        const t0 = since;
        since = null;
        await send(t0);
      } while (dirty);
    } finally { busy = false; }
  };
}

const render = coalesced(async (t0) => {
  if (!state.code) return;
  try {
    const r = await post("/api/render", { code: state.code, source: state.source, sliders: sliders() });
    drawImage(r);
    drawBars(r.probs);
    state.probs = r.probs;
    state.edited = r.edited;
    clearError();
    if (t0 !== null && t0 !== undefined) {
      const ms = performance.now() - t0;
      window.corrkit.latencies.push(ms);
      $("timing").textContent = `slider to image: ${ms.toFixed(1)} ms`;
    }
  } catch (e) { showError(e.message); }
  window.corrkit.renders += 1;
});

const strip = coalesced(async () => {
  if (!state.code || state.chosen === null) return;
  try {
    const s = await post("/api/strip", { code: state.code, source: state.source, sliders: sliders(),
      class: state.cls, index: state.chosen });
    drawStrip(s);
  } catch (e) { showError(e.message); }
  window.corrkit.strips += 1;
});

function refresh() { render(); strip(); }

// -- controls ---------------------------------------------------------------------------------------------------

function fmt(v) { return Math.abs(v) >= 100 ? v.toExponential(2) : v.toFixed(3); }

function buildSliders() {
  const box = $("sliders");
  box.textContent = "";
  const { range, step } = state.info;
  state.rows.forEach((row) => {
    const div = document.createElement("div");
    div.className = "slider";
    div.dataset.index = row.index;
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    let score = "";
    if (row.apcr !== undefined) {
      score = `APCR ${fmt(row.apcr)}`;
      if (row.apcr_lo !== undefined && row.apcr_hi !== undefined) score += ` [${fmt(row.apcr_lo)}, ${fmt(row.apcr_hi)}]`;
      if (row.up !== undefined) score += ` · up ${row.up >= 0 ? "+" : ""}${row.up.toFixed(3)}`;
    }
    name.textContent = row.label;
    const right = document.createElement("span");
    right.className = "muted";
    right.textContent = score;
    const value = document.createElement("span");
    value.className = "value";
    meta.append(name, right, value);
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: -range, max: range, step, value: state.values[row.index] || 0 });
    input.setAttribute("aria-label", row.label);
    value.textContent = Number(input.value).toFixed(2);
    input.addEventListener("input", (ev) => {
      const t = performance.now();
      state.values[row.index] = Number(input.value);
      value.textContent = Number(input.value).toFixed(2);
      choose(row.index);
      render(t);
    });
    input.addEventListener("change", () => strip());
    div.append(meta, input);
    div.addEventListener("pointerdown", () => { if (state.chosen !== row.index) { choose(row.index); strip(); } });
    box.appendChild(div);
  });
}

function choose(index) {
  state.chosen = index;
  for (const div of $("sliders").children) div.classList.toggle("chosen", Number(div.dataset.index) === index);
}

async function loadDirections() {
  try {
    $("sliders").textContent = "finding directions…";
    const r = await api(`/api/directions?source=${encodeURIComponent(state.source)}&class=${state.cls}`);
    state.rows = r.directions;
    state.values = {};
    buildSliders();
    choose(state.rows.length ? state.rows[0].index : null);
    clearError();
    refresh();
  } catch (e) { $("sliders").textContent = ""; showError(e.message); }
}

function setCode(code, label) {
  state.code = code;
  state.codeLabel = label;
  $("code-label").textContent = label;
  refresh();
}

async function priorCode(seed) {
  try {
    const r = await api(`/api/code?kind=seed&seed=${encodeURIComponent(seed)}`);
    state.seed = Number(seed);
    setCode(r.code, `prior sample, seed ${seed}`);
  } catch (e) { showError(e.message); }
}

async function setIndexCode(index) {
  try {
    const r = await api(`/api/code?kind=set&class=${state.cls}&index=${encodeURIComponent(index)}`);
    setCode(r.code, `class-set code ${index} of ${state.info.classes[state.cls]}`);
  } catch (e) { showError(e.message); }
}

async function upload(file) {
  try {
    const r = await api("/api/code", { method: "POST", body: await file.arrayBuffer() });
    setCode(r.code, `uploaded ${file.name}`);
  } catch (e) { showError(e.message); }
}

async function exportZip() {
  try {
    const blob = await post("/api/export", { code: state.code, source: state.source, sliders: sliders(),
      class: state.cls, index: state.chosen });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "corrkit-explore.zip";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) { showError(e.message); }
}

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (e) { showError(e.message); return; }
  const info = state.info;
  $("model").textContent = `${info.bundle} · ${info.latent_dim}-d code · ${info.device}`;
  info.classes.forEach((name, j) => $("class").add(new Option(`${j} ${name}`, j)));
  info.sources.forEach((s) => $("source").add(new Option(s.label, s.name)));
  state.source = info.default_source;
  $("source").value = state.source;
  $("set-row").hidden = !info.run;
  $("class").addEventListener("change", () => { state.cls = Number($("class").value); loadDirections(); });
  $("source").addEventListener("change", () => { state.source = $("source").value; loadDirections(); });
  $("reroll").addEventListener("click", () => { $("seed").value = state.seed + 1; priorCode(state.seed + 1); });
  $("seed").addEventListener("change", () => priorCode($("seed").value));
  $("use-set").addEventListener("click", () => setIndexCode($("set-index").value));
  $("upload").addEventListener("change", () => { if ($("upload").files.length) upload($("upload").files[0]); });
  $("reset").addEventListener("click", () => { state.values = {}; buildSliders(); choose(state.chosen); refresh(); });
  $("export").addEventListener("click", exportZip);
  await priorCode(0);
  await loadDirections();
  window.corrkit.ready = true;
}

start();
