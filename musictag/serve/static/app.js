// musictag live: send a file to POST /api/analyze, read its NDJSON stream, and show the
// per-window tag scores at the playback position of an <audio> element (docs/serve.md).
"use strict";

const SHOWN_TAGS = 8; // tags drawn in "Now" and in the timeline

const $ = (id) => document.getElementById(id);
const els = {
  drop: $("drop"), file: $("file"), status: $("status"), limit: $("limit"),
  modelInfo: $("model-info"), playerBox: $("player-box"), player: $("player"),
  fileName: $("file-name"), playNote: $("play-note"), results: $("results"),
  nowBars: $("now-bars"), nowTime: $("now-time"), timeline: $("timeline"),
  topTags: $("top-tags"), agg: $("agg"), similarPanel: $("similar-panel"),
  similar: document.querySelector("#similar tbody"),
};

let info = null;      // GET /api/info
let run = null;       // the analysis on screen
let runId = 0;        // ignores events of a superseded analysis

function setState(state, message) {
  document.body.dataset.state = state;
  els.status.textContent = message;
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

function fmtTime(s) {
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
}

// ------------------------------------------------------------------------- model info
async function loadInfo() {
  try {
    const res = await fetch("/api/info");
    info = await res.json();
  } catch (e) {
    setState("error", `cannot reach the server: ${e}`);
    return;
  }
  const m = info.model;
  let text = `${m.class}${m.checkpoint ? " (" + m.checkpoint + ")" : ""}: ${m.tags.length} tags, ` +
    `${m.window_s} s windows every ${m.hop_s} s at ${m.sample_rate} Hz`;
  if (info.index) text += ` · index of ${info.index.tracks} tracks`;
  els.modelInfo.textContent = text;
  els.limit.textContent = `Any format the server's libsndfile decodes (wav, flac, ogg, mp3, …), ` +
    `up to ${(info.max_upload_bytes / 2 ** 20).toFixed(0)} MB.`;
}

// ---------------------------------------------------------------------------- analysis
async function analyse(file) {
  const id = ++runId;
  run = {
    file: file.name, tags: info ? info.model.tags : [], windowS: 0, hopS: 0,
    duration: 0, starts: [], scores: [], sums: null, result: null, shown: [],
  };
  els.results.hidden = false;
  els.playerBox.hidden = false;
  els.fileName.textContent = file.name;
  els.playNote.textContent = "";
  els.topTags.replaceChildren();
  els.agg.textContent = "";
  els.similar.replaceChildren();
  els.similarPanel.hidden = true;
  if (els.player.src) URL.revokeObjectURL(els.player.src);
  els.player.src = URL.createObjectURL(file);
  setState("uploading", `uploading ${file.name}…`);
  drawAll();

  let res;
  try {
    res = await fetch(`/api/analyze?filename=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
  } catch (e) {
    if (id === runId) setState("error", `${file.name}: upload failed (${e})`);
    return;
  }
  if (!res.ok) {
    let message = `${file.name}: the server answered ${res.status}`;
    try { message = (await res.json()).error || message; } catch (e) { /* not JSON */ }
    if (id === runId) setState("error", message);
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (id !== runId) { reader.cancel(); return; }
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) handle(JSON.parse(line));
    }
    if (done) break;
  }
  if (document.body.dataset.state === "analysing") {
    setState("error", `${file.name}: the analysis stopped before its result`);
  }
}

function handle(event) {
  if (event.type === "start") {
    Object.assign(run, {
      tags: event.tags, windowS: event.window_s, hopS: event.hop_s, duration: event.duration_s,
    });
    run.sums = new Float64Array(event.tags.length);
    setState("analysing", `analysing ${event.file}…`);
  } else if (event.type === "windows") {
    event.start_s.forEach((s, i) => {
      run.starts.push(s);
      run.scores.push(event.scores[i]);
      event.scores[i].forEach((v, j) => { run.sums[j] += v; });
    });
    const upTo = Math.min(run.duration, run.starts[run.starts.length - 1] + run.windowS);
    setState("analysing", `analysing ${run.file}: ${fmtTime(upTo)} of ${fmtTime(run.duration)}`);
    chooseShown();
    drawAll();
  } else if (event.type === "result") {
    run.result = event;
    chooseShown();
    showResult(event);
    drawAll();
    const cut = event.truncated
      ? ` (cut off: ${event.truncated.decoded_s} s of ${event.truncated.expected_s} s decode)`
      : "";
    setState("done", `${event.file}: ${event.windows} windows scored in ${event.seconds} s${cut}`);
  } else if (event.type === "error") {
    setState("error", event.error);
  }
}

// the tags drawn: best track scores (running mean of the windows until the result arrives)
function chooseShown() {
  const n = run.tags.length;
  const score = run.result
    ? run.tags.map((t) => run.result.scores[t])
    : Array.from(run.sums, (s) => s / Math.max(1, run.starts.length));
  run.shown = [...Array(n).keys()].sort((a, b) => score[b] - score[a]).slice(0, SHOWN_TAGS);
}

function showResult(result) {
  els.agg.textContent = `(${result.aggregation} of ${result.windows} windows)`;
  els.topTags.replaceChildren(...result.tags.map(({ tag, score }) => barItem(tag, score)));
  if (result.similar) {
    els.similarPanel.hidden = false;
    els.similar.replaceChildren(...result.similar.map((hit) => el("tr", {}, [
      el("td", { className: "num", textContent: hit.rank }),
      el("td", { className: "num", textContent: hit.score.toFixed(3) }),
      el("td", { className: "path", textContent: hit.path || hit.id, title: hit.id }),
      el("td", { textContent: (hit.tags && hit.tags.length ? hit.tags
        : (hit.predicted || []).slice(0, 3).map((p) => p[0])).join(", ") }),
    ])));
  }
}

function barItem(tag, score) {
  const fill = el("div", { className: "fill" });
  fill.style.width = `${(100 * score).toFixed(1)}%`;
  const item = el("li", {}, [
    el("span", { className: "name", textContent: tag, title: tag }),
    el("div", { className: "track" }, [fill]),
    el("span", { className: "value", textContent: score.toFixed(2) }),
  ]);
  item.dataset.tag = tag;
  item.dataset.score = score.toFixed(4);
  return item;
}

// --------------------------------------------------------------- scores at a playback time
// linear interpolation between window centres; null while no window reaches time t yet
function scoresAt(t) {
  const n = run ? run.starts.length : 0;
  if (!n) return null;
  const half = run.windowS / 2;
  const lastEnd = run.starts[n - 1] + run.windowS;
  if (!run.result && t > lastEnd) return null;
  const centre = (i) => run.starts[i] + half;
  if (t <= centre(0)) return run.scores[0];
  if (t >= centre(n - 1)) return run.scores[n - 1];
  let hi = 1;
  while (centre(hi) < t) hi++;
  const a = (t - centre(hi - 1)) / (centre(hi) - centre(hi - 1));
  return run.scores[hi].map((v, j) => (1 - a) * run.scores[hi - 1][j] + a * v);
}

function drawNow() {
  if (!run) return;
  const t = els.player.currentTime || 0;
  const scores = scoresAt(t);
  els.nowTime.textContent = `(${fmtTime(t)})`;
  els.nowBars.dataset.time = t.toFixed(3);
  els.nowBars.classList.toggle("pending", !scores);
  els.nowBars.replaceChildren(
    ...run.shown.map((j) => barItem(run.tags[j], scores ? scores[j] : 0)),
  );
}

// heat map: one row per shown tag, one column per window, playhead at the playback time
function drawTimeline() {
  const canvas = els.timeline;
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 800;
  const rows = run ? run.shown.length : 0;
  const rowH = 22;
  const labelW = 130;
  const height = Math.max(60, rows * rowH + 24);
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (!run || !run.duration) return;
  const plotW = width - labelW - 8;
  const x = (s) => labelW + (plotW * s) / run.duration;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  run.shown.forEach((j, r) => {
    const y = r * rowH;
    ctx.fillStyle = "#1d2330";
    ctx.fillText(run.tags[j], 6, y + rowH / 2, labelW - 12);
    ctx.fillStyle = "#eef1f6";
    ctx.fillRect(labelW, y + 2, plotW, rowH - 4);
    run.starts.forEach((s, i) => {
      const end = Math.min(run.duration, i + 1 < run.starts.length ? run.starts[i + 1] : s + run.windowS);
      const v = run.scores[i][j];
      ctx.fillStyle = `rgba(47, 111, 222, ${0.08 + 0.92 * v})`;
      ctx.fillRect(x(s), y + 2, Math.max(1, x(end) - x(s)), rowH - 4);
    });
  });
  ctx.fillStyle = "#667085";
  const axisY = rows * rowH + 12;
  const step = niceStep(run.duration / 8);
  ctx.textAlign = "center";
  for (let s = 0; s <= run.duration; s += step) {
    if (x(s) + 16 < width) ctx.fillText(fmtTime(s).replace(/\.0$/, ""), x(s), axisY);
  }
  ctx.textAlign = "start";
  const px = x(Math.min(run.duration, els.player.currentTime || 0));
  ctx.fillStyle = "#d92d20";
  ctx.fillRect(px - 1, 0, 2, rows * rowH);
}

function niceStep(raw) {
  for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600]) if (s >= raw) return s;
  return 1200;
}

function drawAll() {
  drawNow();
  drawTimeline();
}

function animate() {
  drawAll();
  if (!els.player.paused) requestAnimationFrame(animate);
}

// ------------------------------------------------------------------------------ wiring
els.file.addEventListener("change", () => {
  if (els.file.files.length) analyse(els.file.files[0]);
  els.file.value = ""; // choosing the same file again analyses it again
});
for (const name of ["dragenter", "dragover"]) {
  els.drop.addEventListener(name, (e) => { e.preventDefault(); els.drop.classList.add("over"); });
}
els.drop.addEventListener("dragleave", () => els.drop.classList.remove("over"));
els.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  els.drop.classList.remove("over");
  if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
});
// a file dropped beside the zone must not replace the page
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());

els.player.addEventListener("play", () => requestAnimationFrame(animate));
for (const name of ["seeked", "timeupdate", "loadedmetadata"]) {
  els.player.addEventListener(name, drawAll);
}
els.player.addEventListener("error", () => {
  els.playNote.textContent = "(this browser cannot play the format; the scores are still shown)";
});
els.timeline.addEventListener("click", (e) => {
  if (!run || !run.duration) return;
  const rect = els.timeline.getBoundingClientRect();
  const frac = (e.clientX - rect.left - 130) / (rect.width - 138);
  if (frac >= 0 && frac <= 1) els.player.currentTime = frac * run.duration;
});
window.addEventListener("resize", drawTimeline);

loadInfo();
