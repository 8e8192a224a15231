// The central station's page: tiles per bed with a live strip, the alarm lists, the bed detail.
// Data comes from /api/events (Server-Sent Events: a snapshot, then ticks); actions are POSTs
// with the X-Station-Request header. Everything shown is set as text, never as HTML.
"use strict";

const KINDS = {
  asystole: "Asystole", vfib: "VF", vtach: "VT", afib: "AF", svt: "SVT", brady: "Bradycardia",
  tachy: "Tachycardia", pause: "Pause", pvc_burden: "PVC burden", technical: "Technical",
};
const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };
const state = { beds: new Map(), tileS: 10, alarms: [], mayAct: false, maxSilence: 120, detail: null, audible: null };
// what the tests and the frame-rate check read
window.__station = { frames: 0, ticks: 0, snapshots: 0, lastTickAt: 0, renderMs: 0, seen: {} };
// when each alarm was first on screen (unix s): the tests compare it with when it was stored
const markSeen = (alarmId) => { if (!(alarmId in window.__station.seen)) window.__station.seen[alarmId] = Date.now() / 1000; };

const $ = (selector, root = document) => root.querySelector(selector);
const clockText = (unix) => new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
const alarmText = (a) => a.category === "technical" ? `Technical: ${(a.fault || "fault").replace(/_/g, " ")}` : (KINDS[a.kind] || a.kind);

function plotOptions(width, height, stroke) {
  return {
    width, height, cursor: { show: false }, legend: { show: false }, select: { show: false },
    scales: { x: { time: false }, y: { range: (u, min, max) => [Math.min(min ?? -1, -1), Math.max(max ?? 1.5, 1.5)] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke, width: 1.25, points: { show: false }, spanGaps: false }],
  };
}

function tileFor(bed) {
  let tile = state.beds.get(bed);
  if (tile) return tile;
  const el = document.createElement("article");
  el.className = "tile";
  el.dataset.bed = bed;
  el.innerHTML = '<div class="top"><span class="bed"></span><span class="hr">--</span></div>' +
    '<div class="info"><span class="rhythm"></span><span class="signal"></span><span class="ectopy"></span></div>' +
    '<div class="strip"></div><div class="newest"></div>';
  $(".bed", el).textContent = bed;
  el.addEventListener("click", () => openDetail(bed));
  const container = $("#beds");
  const after = [...container.children].find((other) => other.dataset.bed > bed);
  container.insertBefore(el, after || null);
  const width = Math.max(200, el.clientWidth - 16);
  const plot = new uPlot(plotOptions(width, 70, "#5fd35f"), [[], []], $(".strip", el));
  tile = { el, plot, t: [], mv: [], dirty: true };
  state.beds.set(bed, tile);
  return tile;
}

function addPoints(tile, times, values) {
  const last = tile.t.length ? tile.t[tile.t.length - 1] : -Infinity;
  for (let i = 0; i < times.length; i++) {
    if (times[i] > last) { tile.t.push(times[i]); tile.mv.push(values[i]); }
  }
  if (!tile.t.length) return;
  const start = tile.t[tile.t.length - 1] - state.tileS;
  let drop = 0;
  while (drop < tile.t.length && tile.t[drop] < start) drop++;
  if (drop) { tile.t.splice(0, drop); tile.mv.splice(0, drop); }
  tile.dirty = true;
}

function showSummary(tile, bed) {
  const el = tile.el;
  $(".hr", el).textContent = bed.heart_rate ?? "--";
  $(".rhythm", el).textContent = bed.rhythm;
  const signal = $(".signal", el);
  signal.textContent = bed.signal === "analysable" ? "signal ok" : bed.signal.replace(/_/g, " ");
  signal.classList.toggle("fault", bed.signal !== "analysable");
  $(".ectopy", el).textContent = `V ${bed.ectopy.V} · S ${bed.ectopy.S} /min`;
  el.classList.toggle("off-air", !bed.on_air);
  const newest = $(".newest", el);
  newest.textContent = bed.alarm ? `${clockText(bed.alarm.seen_at)} ${alarmText(bed.alarm)} (${bed.alarm.state})` : "";
  newest.dataset.alarmId = bed.alarm ? bed.alarm.alarm_id : "";
  if (bed.alarm) markSeen(bed.alarm.alarm_id);
  for (const p of ["high", "medium", "low"]) el.classList.remove(`priority-${p}`);
  if (bed.alarm && bed.alarm.category === "clinical" && ["active", "silenced"].includes(bed.alarm.state)) {
    el.classList.add(`priority-${bed.alarm.priority}`);
  }
}

function render() {
  const started = performance.now();
  for (const tile of state.beds.values()) {
    if (!tile.dirty || !tile.t.length) continue;
    const newest = tile.t[tile.t.length - 1];
    tile.plot.batch(() => {
      tile.plot.setData([tile.t, tile.mv], false);
      tile.plot.setScale("x", { min: newest - state.tileS, max: newest });
    });
    tile.dirty = false;
  }
  window.__station.renderMs = performance.now() - started;
}

function alarmItem(a) {
  markSeen(a.alarm_id);
  const li = document.createElement("li");
  li.className = `alarm priority-${a.priority} category-${a.category} state-${a.state}`;
  li.dataset.alarmId = a.alarm_id;
  li.dataset.bed = a.bed;
  for (const [cls, text] of [["when", clockText(a.seen_at)], ["bed", a.bed], ["what", alarmText(a)]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    li.appendChild(span);
  }
  $(".bed", li).addEventListener("click", () => openDetail(a.bed));
  if (state.mayAct) {
    const ack = document.createElement("button");
    ack.className = "ack"; ack.type = "button"; ack.textContent = "Acknowledge";
    ack.addEventListener("click", () => act(a.alarm_id, "acknowledge"));
    const choice = document.createElement("select");
    choice.className = "silence-for";
    for (const s of [30, 60, 120].filter((s) => s <= state.maxSilence)) {
      const option = document.createElement("option");
      option.value = s; option.textContent = `${s} s`;
      choice.appendChild(option);
    }
    const silence = document.createElement("button");
    silence.className = "silence"; silence.type = "button"; silence.textContent = "Silence";
    silence.addEventListener("click", () => act(a.alarm_id, "silence", { seconds: Number(choice.value) }));
    li.append(ack, choice, silence);
  }
  return li;
}

// an alarm's list item is rebuilt only when the alarm changed: a nurse's half-made choice (the
// silence length) survives other alarms coming and going
const items = new Map();
function itemFor(a) {
  const key = JSON.stringify(a);
  const known = items.get(a.alarm_id);
  if (known && known.key === key) return known.li;
  const li = alarmItem(a);
  items.set(a.alarm_id, { key, li });
  return li;
}

function showAlarms() {
  const sorted = [...state.alarms].sort((a, b) => (PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority]) || (b.seen_at - a.seen_at));
  const shown = new Set(sorted.map((a) => a.alarm_id));
  for (const id of [...items.keys()]) if (!shown.has(id)) items.delete(id);
  $("#alarms").replaceChildren(...sorted.filter((a) => a.category === "clinical").map(itemFor));
  $("#technical").replaceChildren(...sorted.filter((a) => a.category !== "clinical").map(itemFor));
}

async function act(alarmId, what, body) {
  const response = await fetch(`/api/alarms/${encodeURIComponent(alarmId)}/${what}`, {
    method: "POST",
    headers: { "X-Station-Request": "1", "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 401) { location.href = "/login"; return; }
  if (!response.ok) { alert((await response.json()).detail); return; }
  const view = await response.json();
  state.alarms = state.alarms.filter((a) => a.alarm_id !== alarmId);
  if (["active", "silenced"].includes(view.state)) state.alarms.push(view);
  showAlarms();
  if (state.detail) refreshDetail();
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  if (message.type === "snapshot") {
    window.__station.snapshots++;
    state.tileS = message.tile_s;
    state.maxSilence = message.max_silence_s;
    $("#ward").textContent = `Central station · ${message.ward}`;
    for (const [bed, data] of Object.entries(message.beds)) {
      const tile = tileFor(bed);
      tile.t = []; tile.mv = [];
      addPoints(tile, data.strip.t, data.strip.mv);
      showSummary(tile, data);
    }
    state.alarms = message.alarms;
    showAlarms();
  } else {
    window.__station.ticks++;
    for (const [bed, data] of Object.entries(message.beds)) {
      const tile = tileFor(bed);
      addPoints(tile, data.t, data.mv);
      showSummary(tile, data);
    }
    if (message.alarms) { state.alarms = message.alarms; showAlarms(); }
  }
  state.audible = message.audible;
  const sound = $("#sound");
  sound.textContent = message.audible ? `sounding: ${message.audible}` : "quiet";
  sound.className = `sound ${message.audible || ""}`;
  window.__station.lastTickAt = Date.now() / 1000;
}

function connect() {
  const source = new EventSource("/api/events");
  source.onopen = () => { $("#connection").textContent = "live"; $("#connection").className = "connection live"; };
  source.onmessage = onMessage;
  source.onerror = async () => {
    $("#connection").textContent = "reconnecting…";
    $("#connection").className = "connection down";
    const who = await fetch("/api/whoami").catch(() => null);
    if (who && who.status === 401) { source.close(); location.href = "/login"; }
  };
}

// -- the bed detail: a minute of strip with the beat labels, and the alarm history ----------

const LABEL_COLOURS = { N: "#8b98a5", S: "#f2c200", V: "#e0201b", F: "#19c3d9", Q: "#9aa3ad" };

function beatLabels(u) {
  const beats = (state.detail && state.detail.beats) || [];
  const ctx = u.ctx;
  ctx.save();
  ctx.font = `${11 * devicePixelRatio}px system-ui`;
  ctx.textAlign = "center";
  for (const beat of beats) {
    const x = u.valToPos(beat.time, "x", true);
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.fillStyle = beat.analysable ? (LABEL_COLOURS[beat.label] || "#fff") : "#5c6773";
    ctx.fillText(beat.label, x, u.bbox.top + 12 * devicePixelRatio);
  }
  ctx.restore();
}

async function openDetail(bed) {
  state.detail = { bed, beats: [] };
  $("#detail").hidden = false;
  $("#detail-title").textContent = bed;
  const holder = $("#detail-strip");
  holder.replaceChildren();
  const options = plotOptions(Math.min(1160, innerWidth - 60), 220, "#5fd35f");
  options.axes = [{ show: true, stroke: "#8b98a5", values: (u, ticks) => ticks.map((t) => clockText(t)) }, { show: true, stroke: "#8b98a5" }];
  options.hooks = { draw: [beatLabels] };
  state.detail.plot = new uPlot(options, [[], []], holder);
  await refreshDetail();
}

async function refreshDetail() {
  const detail = state.detail;
  if (!detail) return;
  const response = await fetch(`/api/beds/${encodeURIComponent(detail.bed)}`);
  if (!response.ok || state.detail !== detail) return;
  const data = await response.json();
  detail.beats = data.strip.beats;
  detail.plot.setData([data.strip.t, data.strip.mv]);
  $("#detail-summary").textContent = `HR ${data.heart_rate ?? "--"} · ${data.rhythm} · ${data.signal.replace(/_/g, " ")}`;
  const rows = data.history.map((h) => {
    const tr = document.createElement("tr");
    tr.dataset.alarmId = h.alarm_id;
    const live = data.alarms.find((a) => a.alarm_id === h.alarm_id);
    const actions = h.actions.map((x) => `${x.action}${x.silence_s ? ` ${x.silence_s} s` : ""} by ${x.actor} ${clockText(x.at)}`).join("; ");
    for (const text of [clockText(h.start_time), alarmText(h), h.priority, live ? live.state : "stored", actions]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  });
  $("#detail-history tbody").replaceChildren(...rows);
}

$("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; state.detail = null; });
setInterval(() => { if (state.detail) refreshDetail(); }, 2000);

// -- sound: the highest unsilenced clinical priority (browsers allow it after a click) --------

let audio = null;
document.addEventListener("click", () => { if (!audio) audio = new AudioContext(); }, { once: true });
function beep(frequency, at) {
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = frequency;
  gain.gain.value = 0.08;
  osc.connect(gain).connect(audio.destination);
  osc.start(audio.currentTime + at);
  osc.stop(audio.currentTime + at + 0.12);
}
let second = 0;
setInterval(() => {
  second++;
  $("#clock").textContent = clockText(Date.now() / 1000);
  if (!audio || !state.audible) return;
  if (state.audible === "high") { beep(880, 0); beep(880, 0.2); beep(880, 0.4); }
  else if (state.audible === "medium" && second % 3 === 0) beep(660, 0);
}, 1000);

function frame() { window.__station.frames++; render(); requestAnimationFrame(frame); }

(async () => {
  const who = await fetch("/api/whoami");
  if (who.status === 401) { location.href = "/login"; return; }
  const me = await who.json();
  state.mayAct = me.may_act;
  $("#user").textContent = me.name + (me.may_act ? "" : " (view only)");
  connect();
  requestAnimationFrame(frame);
})();
