// composer studio: one page over the studio server's JSON (no build step, no third-party code).
"use strict";

const TOKEN = document.querySelector('meta[name="composer-token"]').content;
const $ = (id) => document.getElementById(id);
const PALETTE = ["#deebf7", "#e5f5e0", "#feedde", "#efedf5", "#fff7bc"];
const studio = {
  arrangements: [], name: null, view: null, peaks: null, jobs: [],
  source: "mix", stopAt: null, wrapping: false, switchStarted: null, lastSwitchMs: null, interactiveMs: null,
};
window.studio = studio; // for the browser tests and for curious users

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Composer-Token": TOKEN },
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function say(text) { $("status").textContent = text; }

function clock(seconds) {
  const s = Math.max(0, seconds || 0);
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
}

function barSeconds() {
  const v = studio.view;
  return v && v.bpm ? (v.beats_per_bar * 60) / v.bpm : 2;
}

// ---- arrangements ----

async function loadArrangements() {
  studio.arrangements = await getJSON("/api/arrangements");
  const list = $("arrangement-list");
  list.replaceChildren();
  for (const a of studio.arrangements) {
    const state = a.state === "changed since" ? "changed" : a.state === "invalid" ? "invalid" : "";
    const busy = studio.jobs.some((j) => j.name === a.name && (j.status === "queued" || j.status === "running"));
    const render = el("button", { type: "button", class: "primary", "data-render": a.name, disabled: busy || a.state === "invalid",
      onclick: (e) => { e.stopPropagation(); startJob({ kind: "render", name: a.name }); } }, "Render");
    const item = el("li", { "data-name": a.name, class: a.name === studio.name ? "current" : "", title: a.problem || a.file,
      onclick: () => { location.hash = encodeURIComponent(a.name); } },
      el("strong", {}, a.title || a.name), " ", el("span", { class: "seed" }, a.file),
      el("span", { class: `state ${state}` }, a.state), render);
    list.append(item);
  }
}

// ---- one render ----

async function openRender(name, keepPosition = false) {
  studio.name = name;
  for (const li of document.querySelectorAll("#arrangement-list li")) li.classList.toggle("current", li.dataset.name === name);
  let view;
  try {
    view = await getJSON(`/api/renders/${encodeURIComponent(name)}`);
  } catch (err) {
    $("view").hidden = true;
    $("empty").hidden = false;
    $("empty").textContent = `${name}: not rendered yet. Press Render.`;
    studio.view = null;
    return;
  }
  const player = $("player");
  const position = keepPosition ? player.currentTime : 0;
  const wasPlaying = keepPosition && !player.paused;
  studio.view = view;
  player.loop = Boolean(view.loop);  // a looping render plays end to start, as it will in a DAW
  studio.peaks = await getJSON(`/api/renders/${encodeURIComponent(name)}/peaks?v=${view.version}`);
  $("empty").hidden = true;
  $("view").hidden = false;
  $("title").textContent = view.title;
  const loud = view.loudness;
  $("facts").textContent = [
    clock(view.length_s), view.bpm ? `${view.bpm} BPM` : "", view.key || "",
    loud.integrated_lufs === null ? "silent" : `${loud.integrated_lufs.toFixed(1)} LUFS (target ${loud.target_lufs})`,
    loud.true_peak_dbtp === null ? "" : `true peak ${loud.true_peak_dbtp.toFixed(1)} dBTP`,
    view.complete ? "" : "render not finished",
  ].filter(Boolean).join(" · ");
  drawSections();
  drawSeams();
  setSource("mix", position, wasPlaying);
  draw();
}

function drawSections() {
  const body = $("sections").tBodies[0];
  body.replaceChildren();
  for (const section of studio.view.sections) {
    const takes = el("td");
    for (const take of section.takes) {
      const source = take.audio; // the picked take: the mix itself; another: the mix with it
      takes.append(el("span", { class: `take${take.picked ? " picked" : ""}${studio.source === source ? " playing" : ""}`,
        "data-section": section.name, "data-take": take.take, "data-audio": source },
        el("button", { type: "button", "data-listen": source, title: "Hear the mix with this take, from the playhead",
          onclick: () => switchTo(source) }, `▶ take ${take.take}`),
        el("span", { class: "seed" }, `seed ${take.seed}`),
        take.picked ? el("span", { class: "seed" }, "picked")
          : el("button", { type: "button", "data-pick": `${section.name}/${take.take}`,
            onclick: () => startJob({ kind: "pick", name: studio.name, section: section.name, take: take.take }) }, "Pick")));
    }
    body.append(el("tr", {}, el("td", {}, el("strong", {}, section.name), el("br"),
      el("span", { class: "seed" }, `${clock(section.start_s)}–${clock(section.end_s)}`)), takes,
      el("td", {}, el("button", { type: "button", "data-new-take": section.name,
        onclick: () => startJob({ kind: "new-take", name: studio.name, section: section.name }) }, "New take"))));
  }
}

function drawSeams() {
  const body = $("seams").tBodies[0];
  body.replaceChildren();
  const limit = studio.view.seam_limit;
  for (const seam of studio.view.seams) {
    const bad = seam.score > limit;
    const terms = [`loudness ${seam.loudness_lu.toFixed(1)} LU`, `spectrum ${seam.spectrum_db.toFixed(1)} dB`,
      seam.tempo_percent === null ? "tempo n/a" : `tempo ${seam.tempo_percent.toFixed(1)} %`,
      `harmony ${seam.harmony.toFixed(2)}`].join(" · ");
    const transition = [seam.before, seam.after].find((id) => studio.view.segments.some((s) => s.id === id && s.kind === "transition"));
    body.append(el("tr", { "data-seam": `${seam.before}|${seam.after}`, class: seam.wrap ? "wrap" : "" },
      el("td", {}, `${seam.before} → ${seam.after}${seam.wrap ? " (wrap: the end into the start)" : ""}`),
      el("td", {}, clock(seam.at_s)),
      el("td", { class: `score ${bad ? "bad" : "ok"}`, title: `re-roll limit ${limit}` }, seam.score.toFixed(2)),
      el("td", { class: "terms" }, terms),
      el("td", {}, el("button", { type: "button", "data-across": seam.at_s, onclick: () => playAcross(seam.at_s, seam.wrap) }, "▶ across"), " ",
        transition ? el("button", { type: "button", "data-reroll": transition, title: "Re-roll the transitions whose joins score this high or higher (compose render --reroll)",
          onclick: () => startJob({ kind: "reroll", name: studio.name, above: Math.max(0.5, seam.score - 0.01) }) }, "Re-roll") : "")));
  }
}

// ---- waveform ----

function draw() {
  const canvas = $("wave");
  const view = studio.view;
  if (!view || !studio.peaks) return;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio, height = canvas.clientHeight * ratio;
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext("2d");
  const x = (s) => (s / view.length_s) * width;
  ctx.clearRect(0, 0, width, height);
  let stems = 0;
  for (const seg of view.segments) {
    if (seg.kind === "stem") {
      ctx.fillStyle = PALETTE[stems++ % PALETTE.length];
      ctx.fillRect(x(seg.start_s), 0, x(seg.end_s) - x(seg.start_s), height);
    } else {
      ctx.fillStyle = "rgba(120,120,120,0.15)";
      for (let hx = x(seg.start_s); hx < x(seg.end_s); hx += 6 * ratio) ctx.fillRect(hx, 0, ratio, 10 * ratio);
    }
  }
  if (view.bpm) { // bar lines, every bar (or every 4th where they would crowd)
    const bar = barSeconds();
    const every = (x(bar) < 6 * ratio) ? 4 : 1;
    ctx.fillStyle = "rgba(0,0,0,0.08)";
    for (let n = 0; n * bar <= view.length_s; n += every) ctx.fillRect(x(n * bar), 0, ratio, height);
  }
  const peaks = studio.peaks.peaks, mid = height / 2;
  ctx.fillStyle = "#32648c";
  for (let i = 0; i < peaks.length; i++) {
    const h = peaks[i] * (height / 2 - 14 * ratio);
    ctx.fillRect((i / peaks.length) * width, mid - h, Math.max(ratio, width / peaks.length), 2 * h);
  }
  ctx.font = `${12 * ratio}px system-ui, sans-serif`;
  for (const seg of view.segments) {
    ctx.fillStyle = "#1d1d1b";
    if (seg.kind === "stem") ctx.fillText(seg.id, x(seg.start_s) + 4 * ratio, 14 * ratio);
    ctx.fillStyle = "rgba(0,0,0,0.35)";
    ctx.fillRect(x(seg.start_s), 0, ratio, height);
  }
  for (const seam of view.seams) {
    const sx = Math.min(x(seam.at_s), width - 7 * ratio), sy = height - 12 * ratio;  // the wrap: at the end
    ctx.fillStyle = seam.score > view.seam_limit ? "#c0392b" : "#287a3c";
    ctx.beginPath();
    ctx.moveTo(sx, sy - 6 * ratio); ctx.lineTo(sx + 6 * ratio, sy); ctx.lineTo(sx, sy + 6 * ratio); ctx.lineTo(sx - 6 * ratio, sy);
    ctx.fill();
    ctx.textAlign = seam.wrap ? "right" : "left";
    ctx.fillText(seam.score.toFixed(1), sx + (seam.wrap ? -8 : 8) * ratio, sy + 4 * ratio);
    ctx.textAlign = "left";
  }
  const t = $("player").currentTime || 0;
  ctx.fillStyle = "#c0392b";
  ctx.fillRect(x(t), 0, 2 * ratio, height);
}

// ---- transport ----

function audioUrl(source) {
  return `/audio/${encodeURIComponent(studio.name)}/${source.split("/").map(encodeURIComponent).join("/")}?v=${studio.view.version}`;
}

function setSource(source, position, play) {
  const player = $("player");
  studio.source = source;
  player.src = audioUrl(source);
  const start = () => {
    player.currentTime = Math.min(position || 0, studio.view.length_s);
    if (play) player.play().catch((err) => say(`cannot play: ${err.message}`));
  };
  player.addEventListener("loadedmetadata", start, { once: true });
  const label = source === "mix" ? "mix" : `mix with ${source.split("/")[1]} take ${source.split("/")[2]}`;
  $("source").textContent = label;
  $("borrowed").textContent = "";
  if (source !== "mix") { // segments made from the picked take's audio are heard as they are until Pick
    fetch(player.src, { method: "HEAD", credentials: "same-origin" }).then((r) => {
      const borrowed = r.headers.get("x-composer-borrowed");
      if (borrowed && studio.source === source) $("borrowed").textContent = `(${borrowed.split(",").join(", ")} as in the current mix until picked)`;
    }).catch(() => {});
  }
  $("back-to-mix").hidden = source === "mix";
  for (const node of document.querySelectorAll(".take")) node.classList.toggle("playing", source === node.dataset.audio);
}

function switchTo(source) { // A/B: the other take from the same playhead position, playing
  const player = $("player");
  studio.switchStarted = performance.now();
  setSource(source, player.currentTime, true);
}

function playAcross(at, wrap) {
  // two bars either side of a join; across a loop's wrap, the end and then the start (the player loops)
  const bars = 2 * barSeconds();
  const player = $("player");
  if (studio.source !== "mix") setSource("mix", Math.max(0, at - bars), true);
  else { player.currentTime = Math.max(0, at - bars); player.play(); }
  studio.stopAt = wrap ? bars : at + bars;
  studio.wrapping = Boolean(wrap);
}

function toggle() {
  const player = $("player");
  if (player.paused) player.play().catch((err) => say(`cannot play: ${err.message}`)); else player.pause();
}

function seekBy(seconds) {
  const player = $("player");
  player.currentTime = Math.min(Math.max(0, player.currentTime + seconds), studio.view ? studio.view.length_s : 0);
}

function tick() {
  const player = $("player");
  if (studio.view) {
    const t = player.currentTime || 0;
    const bar = studio.view.bpm ? ` · bar ${Math.floor(t / barSeconds()) + 1}` : "";
    $("clock").textContent = `${clock(t)} / ${clock(studio.view.length_s)}${bar}`;
    if (studio.wrapping && t < studio.stopAt) studio.wrapping = false;  // it went round to the start
    if (studio.stopAt !== null && !studio.wrapping && t >= studio.stopAt) { player.pause(); studio.stopAt = null; }
    draw();
  }
  requestAnimationFrame(tick);
}

// ---- jobs ----

async function startJob(body) {
  try {
    const job = await post("/api/jobs", body);
    say(`queued: ${describe(job)}`);
    await pollJobs();
  } catch (err) { say(`refused: ${err.message}`); }
}

function describe(job) {
  if (job.kind === "pick") return `pick ${job.section} take ${job.take} (${job.name})`;
  if (job.kind === "new-take") return `new take of ${job.section} (${job.name})`;
  if (job.kind === "reroll") return `re-roll joins above ${job.above.toFixed(2)} (${job.name})`;
  return `render ${job.name}`;
}

let polling = null;
async function pollJobs() {
  clearTimeout(polling);
  let jobs;
  try { jobs = await getJSON("/api/jobs"); } catch (err) { say(`studio unreachable: ${err.message}`); polling = setTimeout(pollJobs, 3000); return; }
  const before = new Map(studio.jobs.map((j) => [j.id, j.status]));
  studio.jobs = jobs;
  const list = $("job-list");
  list.replaceChildren();
  if (!jobs.length) list.append(el("li", { class: "status" }, "No jobs yet: Render, New take, Pick and Re-roll queue here, one at a time."));
  for (const job of [...jobs].reverse()) {
    const active = job.status === "queued" || job.status === "running";
    const eta = job.eta_s === null ? "" : ` · about ${clock(job.eta_s)} left`;
    const segments = job.segments.filter((s) => s.state !== "cached").map((s) => `${s.id} ${s.done}/${s.total}`).join(", ");
    list.append(el("li", { "data-job": job.id, "data-status": job.status },
      el("div", { class: "what" }, describe(job)),
      el("div", { class: `status ${job.status}` }, job.status + (job.status !== "running" ? "" : job.steps ? ` · ${job.steps_done}/${job.steps} steps${eta}` : " · preparing"),
        job.error ? `: ${job.error}` : ""),
      job.status === "running" ? el("progress", { max: Math.max(job.steps, 1), value: job.steps_done }) : "",
      active && segments ? el("div", { class: "segments" }, segments) : "",
      active ? el("button", { type: "button", "data-cancel": job.id, onclick: () => post(`/api/jobs/${job.id}/cancel`).then(pollJobs) }, "Cancel") : ""));
  }
  const finished = jobs.filter((j) => before.has(j.id) && (before.get(j.id) === "running" || before.get(j.id) === "queued") && j.status !== before.get(j.id));
  for (const job of finished) say(`${job.status}: ${describe(job)}${job.error ? ` (${job.error})` : ""}`);
  if (finished.length || jobs.length !== before.size) {
    await loadArrangements();
    if (finished.some((j) => j.name === studio.name)) await openRender(studio.name, true);
  }
  const busy = jobs.some((j) => j.status === "queued" || j.status === "running");
  polling = setTimeout(pollJobs, busy ? 400 : 2000);
}

// ---- start ----

function route() {
  const name = decodeURIComponent(location.hash.slice(1));
  return name ? openRender(name) : Promise.resolve();
}

document.addEventListener("keydown", (e) => {
  if (!studio.view || e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA") return;
  if (e.code === "Space") { e.preventDefault(); toggle(); }
  else if (e.code === "ArrowLeft") { e.preventDefault(); seekBy(e.shiftKey ? -barSeconds() : -5); }
  else if (e.code === "ArrowRight") { e.preventDefault(); seekBy(e.shiftKey ? barSeconds() : 5); }
});

window.addEventListener("DOMContentLoaded", async () => {
  const player = $("player");
  $("play").addEventListener("click", toggle);
  $("back-to-mix").addEventListener("click", () => switchTo("mix"));
  $("wave").addEventListener("click", (e) => {
    if (!studio.view) return;
    const box = e.currentTarget.getBoundingClientRect();
    player.currentTime = ((e.clientX - box.left) / box.width) * studio.view.length_s;
    studio.stopAt = null;
  });
  player.addEventListener("play", () => { $("play").textContent = "Pause"; });
  player.addEventListener("pause", () => { $("play").textContent = "Play"; });
  player.addEventListener("playing", () => {
    if (studio.switchStarted !== null) { studio.lastSwitchMs = performance.now() - studio.switchStarted; studio.switchStarted = null; }
  });
  player.addEventListener("error", () => say(`cannot load ${studio.source}: the take may not be rendered`));
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", draw);
  try {
    await loadArrangements();
    await pollJobs();
    let name = decodeURIComponent(location.hash.slice(1));
    if (!name && studio.arrangements.length) {
      name = studio.arrangements[0].name;
      history.replaceState(null, "", `#${encodeURIComponent(name)}`);
    }
    if (name) await openRender(name);
  } catch (err) { say(err.message); }
  studio.interactiveMs = performance.now();
  document.body.dataset.ready = "1";
  requestAnimationFrame(tick);
});
