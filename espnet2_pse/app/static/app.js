// The page of pse-app: talks to the server's JSON API (see espnet2_pse/app/server.py).
"use strict";

const $ = (id) => document.getElementById(id);
let maxUploadMb = 200;
let pollTimer = null;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function minutes(seconds) {
  if (seconds == null) return "";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// --- state ------------------------------------------------------------------------------

async function refresh() {
  const state = await api("/api/state");
  maxUploadMb = state.max_upload_mb;
  showDefaults(state.personalize_defaults);
  for (const kind of ["noisy", "clean"]) showRecordings(kind, state.recordings[kind]);
  showModels(state.models);
  showPersonalize(state.personalize);
}

// The epoch fields' placeholders depend on which recordings there are (clean speech alone: no
// zero-shot step, a few-shot length from the clean seconds): uploads and removals return them.
function showDefaults(defaults) {
  $("max-epoch").placeholder = defaults.max_epoch;
  $("fsl-max-epoch").placeholder = defaults.fsl_max_epoch;
}

function showRecordings(kind, recordings) {
  const list = $(`${kind}-list`);
  list.replaceChildren(...recordings.map((r) => {
    const remove = element("button", { type: "button", class: "remove", title: "remove" }, "×");
    remove.onclick = async () => {
      const body = await api(`/api/recordings/${kind}/${encodeURIComponent(r.name)}`, { method: "DELETE" });
      showRecordings(kind, body.recordings);
      showDefaults(body.personalize_defaults);
    };
    return element("li", {}, `${r.name} (${r.seconds} s) `, remove);
  }));
}

function showModels(models) {
  for (const select of document.querySelectorAll(".model-select")) {
    fillSelect(select, models);
  }
  liveModels = models.filter((m) => m.live).map((m) => m.id);
  fillSelect($("live-model"), models.filter((m) => m.live));
  $("live-start").disabled = !models.some((m) => m.live) || liveSession !== null;
  updateDownloads();
}

function fillSelect(select, models) {
  const previous = select.value, had = [...select.options].map((o) => o.value);
  select.replaceChildren(...models.map((m) => element("option", { value: m.id }, m.label)));
  const fresh = models.some((m) => m.id === "personal") && !had.includes("personal");
  if (fresh) select.value = "personal";  // a personal model just written: offer it first
  else if (models.some((m) => m.id === previous)) select.value = previous;
}

function showRejected(list, rejected) {
  list.replaceChildren(...rejected.map((r) => element("li", {}, `${r.name}: ${r.reason}`)));
}

// --- uploads and recording ----------------------------------------------------------------

function tooBig(files) {
  const bytes = [...files].reduce((sum, f) => sum + f.size, 0);
  return bytes > maxUploadMb * 1024 * 1024 ? `these files are larger than the ${maxUploadMb} MB upload limit` : null;
}

async function upload(kind, files) {
  const rejectedList = $("upload-rejected");
  const refusal = tooBig(files);
  if (refusal) { showRejected(rejectedList, [{ name: "upload", reason: refusal }]); return; }
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  try {
    const body = await api(`/api/recordings/${kind}`, { method: "POST", body: form });
    showRecordings(kind, body.recordings);
    showRejected(rejectedList, body.rejected);
    showDefaults(body.personalize_defaults);
  } catch (err) {
    showRejected(rejectedList, [{ name: "upload", reason: err.message }]);
  }
}

// Microphone capture at 16 kHz through the capture worklet; returns {context, stop()}.
async function openMicrophone(onSamples) {
  const context = new AudioContext({ sampleRate: 16000 });
  await context.audioWorklet.addModule("/static/audio-worklet.js");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const source = context.createMediaStreamSource(stream);
  const capture = new AudioWorkletNode(context, "capture");
  capture.port.onmessage = (event) => onSamples(event.data);
  source.connect(capture).connect(context.destination);  // the capture node outputs silence
  return {
    context,
    async stop() {
      source.disconnect();
      capture.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      await context.close();
    },
  };
}

function wavFile(samples, rate, name) {
  const data = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (offset, s) => [...s].forEach((c, i) => data.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); data.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVEfmt ");
  data.setUint32(16, 16, true); data.setUint16(20, 1, true); data.setUint16(22, 1, true);
  data.setUint32(24, rate, true); data.setUint32(28, 2 * rate, true); data.setUint16(32, 2, true);
  data.setUint16(34, 16, true); text(36, "data"); data.setUint32(40, 2 * samples.length, true);
  samples.forEach((v, i) => data.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, v)) * 32767, true));
  return new File([data], name, { type: "audio/wav" });
}

const recorders = {};

async function toggleRecording(button) {
  const kind = button.dataset.kind;
  if (recorders[kind]) {
    const { mic, chunks } = recorders[kind];
    delete recorders[kind];
    await mic.stop();
    button.textContent = "Record with the microphone";
    const samples = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
    chunks.reduce((offset, c) => (samples.set(c, offset), offset + c.length), 0);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    await upload(kind, [wavFile(samples, 16000, `recording-${stamp}.wav`)]);
    return;
  }
  const chunks = [];
  recorders[kind] = { chunks, mic: await openMicrophone((samples) => chunks.push(samples)) };
  button.textContent = "Stop recording";
}

// --- personalization --------------------------------------------------------------------

const STEPS = { data: "preparing your data", zsl: "learning your voice (zero-shot)",
  fsl: "fine-tuning on your clean speech", pack: "packing the model", done: "done" };

function showPersonalize(status) {
  const running = status.state === "running" || status.state === "cancelling";
  $("personalize-start").disabled = running;
  $("personalize-cancel").disabled = status.state !== "running";
  $("personalize-progress").value = status.fraction || 0;
  let text = { idle: "Not started.", cancelling: "Cancelling after the current epoch…" }[status.state] || "";
  if (status.state === "running") {
    text = `${STEPS[status.step] || status.step}`;
    if (status.epoch) text += `, epoch ${status.epoch} of ${status.max_epoch}`;
    text += ` — ${Math.round(100 * (status.fraction || 0))} %`;
    if (status.eta_s != null) text += `, about ${minutes(status.eta_s)} left`;
  } else if (status.message) {
    text = `${status.state}: ${status.message}`;
  }
  $("personalize-status").textContent = text;
  $("personalize-status").dataset.state = status.state;
  if (running && !pollTimer) pollTimer = setInterval(pollPersonalize, 1000);
  if (!running && pollTimer) { clearInterval(pollTimer); pollTimer = null; refresh(); }
}

async function pollPersonalize() {
  showPersonalize(await api("/api/personalize"));
}

async function startPersonalize() {
  const options = { causal: $("causal").checked };
  if ($("max-epoch").value) options.max_epoch = Number($("max-epoch").value);
  if ($("fsl-max-epoch").value) options.fsl_max_epoch = Number($("fsl-max-epoch").value);
  try {
    showPersonalize(await api("/api/personalize", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(options) }));
  } catch (err) {
    $("personalize-status").textContent = err.message;
  }
}

// --- enhancement ------------------------------------------------------------------------

async function enhance() {
  const files = $("enhance-files").files;
  const status = $("enhance-status");
  if (!files.length) { status.textContent = "Choose one or more recordings first."; return; }
  const refusal = tooBig(files);
  if (refusal) { status.textContent = refusal; return; }
  const form = new FormData();
  form.append("model", $("enhance-model").value);
  for (const file of files) form.append("file", file, file.name);
  status.textContent = `Enhancing ${files.length} file(s)…`;
  try {
    const body = await api("/api/enhance", { method: "POST", body: form });
    showRejected($("enhance-rejected"), body.rejected);
    $("enhance-results").prepend(...body.results.map(resultCard));
    status.textContent = `Enhanced ${body.results.length} file(s).`;
  } catch (err) {
    status.textContent = err.message;
  }
}

function abPlayer(urls) {
  const audio = element("audio", { controls: "", src: urls.noisy, preload: "auto" });
  const buttons = ["noisy", "enhanced"].map((side, i) => {
    const button = element("button", { type: "button", "data-side": side }, `${"AB"[i]}: ${side}`);
    button.onclick = () => {
      const at = audio.currentTime, playing = !audio.paused;
      audio.src = urls[side];
      audio.addEventListener("loadedmetadata", () => { audio.currentTime = at; if (playing) audio.play(); }, { once: true });
      buttons.forEach((b) => b.classList.toggle("active", b === button));
    };
    return button;
  });
  buttons[0].classList.add("active");
  return element("div", { class: "ab" }, ...buttons, audio);
}

function scoreTable(scores) {
  if (!scores.noisy) return element("p", {}, "Scores need the metrics extra (pip install 'espnet2_pse[metrics]').");
  const rows = [["sig", "DNSMOS SIG (speech)"], ["bak", "DNSMOS BAK (background)"], ["ovrl", "DNSMOS OVRL"],
    ["povrl", "personalized DNSMOS OVRL"]];
  return element("table", { class: "scores" },
    element("tr", {}, element("th", {}, "reference-free score"), element("th", {}, "noisy"), element("th", {}, "enhanced")),
    ...rows.map(([key, label]) => element("tr", { "data-score": key }, element("td", {}, label),
      element("td", {}, scores.noisy[key].toFixed(2)), element("td", {}, scores.enhanced[key].toFixed(2)))));
}

function resultCard(result) {
  const pictures = element("div", { class: "spectrograms" },
    ...["noisy", "enhanced"].map((side) => element("img", { src: result.spectrogram[side], alt: `${side} spectrogram` })));
  const download = element("a", { href: result.download, class: "button download-enhanced" }, "download enhanced audio");
  return element("div", { class: "result" },
    element("h3", {}, `${result.name} — ${result.seconds} s, ${result.model}`),
    abPlayer(result.audio), pictures, scoreTable(result.scores), download);
}

let liveModels = [];

function updateDownloads() {
  const model = $("download-model").value;
  for (const [id, format] of [["download-zip", "zip"], ["download-onnx", "onnx"], ["download-onnx-streaming", "onnx_streaming"]]) {
    const offered = model && (format !== "onnx_streaming" || liveModels.includes(model));  // streaming needs causal
    if (offered) $(id).href = `/api/models/${model}/download?format=${format}`;
    else $(id).removeAttribute("href");
    $(id).classList.toggle("unavailable", !offered);
  }
}

// --- live -------------------------------------------------------------------------------

let liveSession = null;

async function startLive() {
  const status = $("live-status");
  $("live-start").disabled = true;
  const socket = new WebSocket(`ws://${location.host}/ws/live?model=${encodeURIComponent($("live-model").value)}`);
  socket.binaryType = "arraybuffer";
  const session = { socket, sent: [], roundTrips: [], pending: new Float32Array(0), chunk: 256 };
  liveSession = session;
  socket.onmessage = async (event) => {
    if (typeof event.data !== "string") {
      session.roundTrips.push(performance.now() - session.sent.shift());
      if (session.player) session.player.port.postMessage(new Float32Array(event.data));
      showLatency(session);
      return;
    }
    const message = JSON.parse(event.data);
    if (message.type === "error") { status.textContent = message.message; await stopLive(false); }
    if (message.type === "ready") await openLive(session, message);
    if (message.type === "saved") showSaved(message, session);
  };
  socket.onerror = () => { status.textContent = "the live connection failed"; };
}

async function openLive(session, ready) {
  session.chunk = ready.chunk;
  session.latencyMs = ready.latency_ms;
  session.mic = await openMicrophone((samples) => sendLive(session, samples));
  session.player = new AudioWorkletNode(session.mic.context, "player");
  session.player.connect(session.mic.context.destination);
  $("live-stop").disabled = false;
  $("live-status").textContent = "Live: speak.";
}

function sendLive(session, samples) {
  const joined = new Float32Array(session.pending.length + samples.length);
  joined.set(session.pending); joined.set(samples, session.pending.length);
  let offset = 0;
  for (; offset + session.chunk <= joined.length; offset += session.chunk) {
    session.socket.send(joined.slice(offset, offset + session.chunk));
    session.sent.push(performance.now());
  }
  session.pending = joined.slice(offset);
}

function showLatency(session) {
  const trips = session.roundTrips.slice(-200).sort((a, b) => a - b);
  if (!trips.length) return;
  const median = trips[Math.floor(trips.length / 2)], p95 = trips[Math.floor(0.95 * (trips.length - 1))];
  const total = median + session.latencyMs + 1000 * session.chunk / 16000;
  $("live-status").textContent = `Live: round trip ${median.toFixed(1)} ms (95 %: ${p95.toFixed(1)} ms), ` +
    `model ${session.latencyMs.toFixed(1)} ms, chunk ${(1000 * session.chunk / 16000).toFixed(0)} ms: ` +
    `about ${total.toFixed(0)} ms mouth to ear.`;
  $("live-status").dataset.roundTripMs = median.toFixed(2);
}

function showSaved(saved, session) {
  $("live-saved").replaceChildren(`Saved ${saved.seconds} s: `,
    element("a", { href: saved.input, id: "live-input" }, "microphone"), " / ",
    element("a", { href: saved.output, id: "live-output" }, "enhanced"));
  session.socket.close();
}

async function stopLive(sendStop = true) {
  const session = liveSession;
  if (!session) return;
  liveSession = null;
  $("live-stop").disabled = true;
  $("live-start").disabled = false;
  if (session.mic) await session.mic.stop();
  if (sendStop && session.socket.readyState === WebSocket.OPEN) session.socket.send(JSON.stringify({ type: "stop" }));
}

// --- wiring -----------------------------------------------------------------------------

for (const kind of ["noisy", "clean"]) {
  $(`${kind}-files`).onchange = async (event) => { await upload(kind, event.target.files); event.target.value = ""; };
}
for (const button of document.querySelectorAll("button.record")) button.onclick = () => toggleRecording(button);
$("personalize-start").onclick = startPersonalize;
$("personalize-cancel").onclick = async () => showPersonalize(await api("/api/personalize/cancel", { method: "POST" }));
$("enhance-start").onclick = enhance;
$("download-model").onchange = updateDownloads;
$("live-start").onclick = startLive;
$("live-stop").onclick = () => stopLive(true);
refresh();
