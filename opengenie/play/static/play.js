// The play page: one WebSocket session per tab (protocol in docs/play.md).
"use strict";

const $ = (id) => document.getElementById(id);
const screen = $("screen");
const ctx = screen.getContext("2d");
const KEYMAP_STORE = "opengenie.keymap.v1";
const MAPPABLE = { ArrowLeft: "← Left", ArrowRight: "→ Right", ArrowUp: "↑ Up", ArrowDown: "↓ Down", " ": "Space" };
const HOLD_MS = 300;  // a key held this long repeats its action at the world's pace
const MAX_QUEUE = 8;  // key presses remembered while a frame is being made

const game = {
  ws: null, session: null, info: null, busy: false, queue: [], held: null,
  shown: [], keymap: {}, lastImage: null,
};

// --- drawing -----------------------------------------------------------------------------

function fitScreen() {
  // The largest whole-number scale that fits: every model pixel becomes an equal square.
  if (!game.info) return;
  const [h, w] = game.info.image_size;
  const room = $("stage").clientWidth;
  const tall = window.innerHeight - $("stage").offsetTop - 70;  // leave room for the message line
  const scale = Math.max(1, Math.floor(Math.min(room / w, Math.max(tall, 2 * h) / h)));
  screen.width = w * scale;
  screen.height = h * scale;
  if (game.lastImage) draw(game.lastImage);
}

function draw(img) {
  game.lastImage = img;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, screen.width, screen.height);
}

function showFrame(msg) {
  const img = new Image();
  img.onload = () => draw(img);
  img.src = msg.image;
  screen.dataset.step = msg.step;
  screen.dataset.frames = msg.frames;
  $("step").textContent = msg.step;
  $("ms").textContent = msg.ms.toFixed(0);
  const now = performance.now();
  game.shown.push(now);
  game.shown = game.shown.filter((t) => now - t < 2000);
  const span = (now - game.shown[0]) / 1000;
  $("fps").textContent = game.shown.length > 1 ? ((game.shown.length - 1) / span).toFixed(1) : "0.0";
}

function hint() {
  const n = game.info ? game.info.num_actions : 0;
  return `Keys 1–${Math.min(n, 9)}${n >= 10 ? ", 0" : ""} take actions · arrows as mapped · P previews · R resets`;
}

function say(text, isError = false) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

// --- the session -------------------------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  game.ws = new WebSocket(`${proto}://${location.host}/ws`);
  game.busy = true;  // until the first frame
  game.queue = [];
  game.ws.onopen = () => { $("conn").textContent = "connected"; $("conn").className = "on"; };
  game.ws.onclose = (ev) => {
    $("conn").textContent = "disconnected";
    $("conn").className = "off";
    game.session = null;
    say(`Disconnected${ev.reason ? ": " + ev.reason : ""}. Press Reset to play again.`, true);
  };
  game.ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") {
      hello(msg);
    } else if (msg.type === "frame") {
      showFrame(msg);
      clearPreview();
      say(hint());
      game.busy = false;
      pump();
    } else if (msg.type === "preview") {
      showPreview(msg);
      game.busy = false;
      pump();
    } else if (msg.type === "error") {
      say(msg.message, true);
      game.busy = false;
      pump();
    }
  };
}

function hello(msg) {
  const first = !game.info;
  game.session = msg.session;
  game.info = msg;
  $("download").href = `/api/sessions/${msg.session}/session.gif`;
  if (first) {
    buildActions(msg.num_actions, msg.action_labels || []);
    buildKeymap(msg.num_actions, msg.action_labels || [], msg.arrow_keys || {});
    if (msg.sampling) $("sampling").textContent = msg.sampling.text;
    if (msg.samples > 0) loadSamples();
    fitScreen();
  }
}

function send(message) {
  if (!game.ws || game.ws.readyState !== WebSocket.OPEN) return false;
  game.busy = true;
  game.ws.send(JSON.stringify(message));
  return true;
}

function act(action) {
  if (game.busy) {
    if (game.queue.length < MAX_QUEUE) game.queue.push(action);
    return;
  }
  send({ type: "action", action });
}

// After each frame: take the next queued press, else keep repeating a held key.
function pump() {
  if (game.busy) return;
  if (game.queue.length) {
    send({ type: "action", action: game.queue.shift() });
  } else if (game.held && performance.now() - game.held.since >= HOLD_MS) {
    send({ type: "action", action: game.held.action });
  }
}

// --- keys and buttons --------------------------------------------------------------------

function actionOfKey(key) {
  if (/^[1-9]$/.test(key) && Number(key) <= game.info.num_actions) return Number(key) - 1;
  if (key === "0" && game.info.num_actions >= 10) return 9;
  const mapped = game.keymap[key];
  return mapped === undefined || mapped === null ? null : mapped;
}

function highlight(action) {
  document.querySelectorAll("#actions button").forEach((b, i) => b.classList.toggle("active", i === action));
}

document.addEventListener("keydown", (ev) => {
  if (!game.info || ev.target.tagName === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "r" || ev.key === "R") { reset(); return; }
  if (ev.key === "p" || ev.key === "P") { preview(); return; }
  const action = actionOfKey(ev.key);
  if (action === null) return;
  ev.preventDefault();  // arrows and space would scroll the page
  if (ev.repeat) return;  // holding is handled by `pump`, at the pace frames come back
  game.held = { action, since: performance.now() };
  highlight(action);
  act(action);
  setTimeout(pump, HOLD_MS);
});

document.addEventListener("keyup", (ev) => {
  if (game.held && actionOfKey(ev.key) === game.held.action) { game.held = null; highlight(null); }
});
window.addEventListener("blur", () => { game.held = null; highlight(null); });

// A world labelled at export (`opengenie label`) names what each action does, measured from
// many prompts: "walk right", "jump", "still"; unlabelled worlds show the action ids only.
function buildActions(n, labels) {
  const box = $("actions");
  for (let i = 0; i < n; i++) {
    const b = document.createElement("button");
    b.type = "button";
    const key = i < 9 ? "key " + (i + 1) : i === 9 ? "key 0" : "";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = labels[i] || "";
    b.innerHTML = `${i}<small>${key}</small>`;
    if (labels[i]) b.appendChild(name);
    b.title = labels[i] ? `latent action ${i}: ${labels[i]}` : `latent action ${i}`;
    b.addEventListener("click", () => act(i));
    box.appendChild(b);
  }
  $("lastkey").textContent = String(Math.min(n, 9));
}

function buildKeymap(n, labels, arrows) {
  // A mapping the player chose is remembered per world (its labels tell worlds apart).
  const store = KEYMAP_STORE + (labels.length ? ":" + labels.join("|") : "");
  let stored = {};
  try { stored = JSON.parse(localStorage.getItem(store) || "{}"); } catch (e) { stored = {}; }
  // The world's own arrow mapping when it has one (measured with its labels), else 0..3.
  const labelled = Object.keys(arrows).length > 0;
  const defaults = labelled ? { ArrowLeft: null, ArrowRight: null, ArrowUp: null, ArrowDown: null, " ": null, ...arrows }
                            : { ArrowLeft: 0, ArrowRight: 1, ArrowUp: 2, ArrowDown: 3, " ": null };
  const box = $("keymap");
  for (const [key, label] of Object.entries(MAPPABLE)) {
    let value = key in stored ? stored[key] : defaults[key];
    if (value !== null && !(value >= 0 && value < n)) value = null;
    game.keymap[key] = value;
    const name = document.createElement("kbd");
    name.textContent = label;
    const select = document.createElement("select");
    select.setAttribute("aria-label", `action of the ${label} key`);
    select.dataset.key = key;
    select.add(new Option("— nothing —", ""));
    for (let i = 0; i < n; i++) select.add(new Option(labels[i] ? `action ${i}: ${labels[i]}` : `action ${i}`, String(i)));
    select.value = value === null ? "" : String(value);
    select.addEventListener("change", () => {
      game.keymap[key] = select.value === "" ? null : Number(select.value);
      localStorage.setItem(store, JSON.stringify(game.keymap));
      select.blur();  // give the keys back to the game
    });
    box.append(name, select);
  }
}

// --- the action preview ------------------------------------------------------------------
// One step of every action from the current frame, drawn by the server on a copy of the
// session: nothing is taken, so the step count and the rollout stay where they are.

function preview() {
  if (!game.info || game.busy) return;
  if (send({ type: "preview" })) say("Previewing every action…");
}

function showPreview(msg) {
  const labels = game.info.action_labels || [];
  const box = $("previews");
  box.replaceChildren();
  box.dataset.step = msg.step;
  msg.images.forEach((src, i) => {
    const fig = document.createElement("figure");
    const img = new Image();
    img.src = src;
    img.alt = labels[i] ? `after action ${i}: ${labels[i]}` : `after action ${i}`;
    const cap = document.createElement("figcaption");
    cap.textContent = labels[i] ? `${i} · ${labels[i]}` : `action ${i}`;
    fig.title = `take action ${i}`;
    fig.append(img, cap);
    fig.addEventListener("click", () => act(i));
    box.appendChild(fig);
  });
  say(`One step of each action from step ${msg.step} (${msg.ms.toFixed(0)} ms); none was taken: taking one next shows its picture.`);
}

function clearPreview() {
  // A preview shows the futures of one frame; once the world moves on it is out of date.
  const box = $("previews");
  if (box.children.length) { box.replaceChildren(); delete box.dataset.step; }
}

function reset() {
  if (!game.ws || game.ws.readyState === WebSocket.CLOSED) { connect(); return; }
  game.queue = [];
  if (!game.busy) send({ type: "reset" });
}

async function upload(file) {
  if (!game.session) return say("Not connected: press Reset first.", true);
  if (file.size > game.info.max_upload_bytes) {
    return say(`${file.name} is larger than ${game.info.max_upload_bytes >> 20} MB; pick a smaller image.`, true);
  }
  say(`Starting from ${file.name}…`);
  const res = await fetch(`/api/sessions/${game.session}/prompt`, {
    method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
  });
  const msg = await res.json();
  if (msg.type === "error") return say(msg.message, true);
  showFrame(msg);
  say(`Playing from ${file.name}.`);
}

async function loadSamples() {
  const samples = await (await fetch("/api/samples")).json();
  const box = $("samples");
  for (const s of samples) {
    const img = new Image();
    img.src = s.image;
    img.alt = img.title = s.label;
    img.addEventListener("click", () => { game.queue = []; if (!game.busy) send({ type: "sample", index: s.index }); });
    box.appendChild(img);
  }
  $("samples-panel").hidden = false;
}

$("reset").addEventListener("click", (ev) => { reset(); ev.target.blur(); });
$("preview").addEventListener("click", (ev) => { preview(); ev.target.blur(); });
$("upload").addEventListener("change", (ev) => {
  if (ev.target.files.length) upload(ev.target.files[0]);
  ev.target.value = "";  // choosing the same file again must fire `change` again
});
$("download").addEventListener("click", (ev) => { if (!game.session) ev.preventDefault(); });
window.addEventListener("resize", fitScreen);
connect();
