// Live updates: one WebSocket to /ws/events/ per page; nothing polls.
//
// Badges marked data-state-for="<host>:<uuid>" change the moment an event arrives. Regions
// marked data-live are re-fetched (debounced) when an event concerns them, so rows appear and
// disappear, counts change and buttons follow the state. After a dropped socket reconnects,
// every region is re-fetched, so nothing missed while disconnected stays stale.

const DEBOUNCE_MS = 150;
const timers = new WeakMap();
let backoff = 500;
let everConnected = false;

function setStatus(text, state) {
  const el = document.getElementById("live-status");
  if (el) { el.textContent = text; el.dataset.state = state; }
}

function concerns(region, ev) {
  const kind = region.dataset.live;
  if (kind === "domains") return ev.type === "domain" || ev.type === "host";
  if (kind === "domain") {
    return String(ev.host) === region.dataset.host && (ev.type === "host" || ev.uuid === region.dataset.uuid);
  }
  if (kind === "host") return String(ev.host) === region.dataset.host && (ev.type === "domain" || ev.type === "host");
  if (kind === "jobs") return ev.type === "job" && !document.querySelector(`[data-job-bar="${ev.id}"]`);
  if (kind === "job") return ev.type === "job" && String(ev.id) === region.dataset.job && ev.state !== "running";
  if (kind === "domains-of-job") return ev.type === "domain";
  if (kind === "snapshots") {
    // Its own jobs, started here or anywhere else: re-fetched when one appears or ends, patched in between.
    const shown = !!region.querySelector(`[data-job-bar="${ev.id}"]`);
    return (ev.type === "snapshots" && String(ev.id) === region.dataset.domain)
      || (ev.type === "job" && ev.target === `domain:${region.dataset.domain}` && (ev.state !== "running" || !shown));
  }
  if (kind === "networks") return ev.type === "network" && String(ev.host) === region.dataset.host;
  if (kind === "pools") {
    return (ev.type === "pool" && String(ev.host) === region.dataset.host)
      || (ev.type === "job" && ev.state !== "running" && ev.state !== "queued");
  }
  return false;
}

async function refresh(region) {
  const url = region.dataset.liveUrl || window.location.href;
  const response = await fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" });
  if (response.status === 404 && region.dataset.live === "domain") {
    region.insertAdjacentHTML("afterbegin", '<div class="msg error" role="alert">This domain no longer exists on its host.</div>');
    return;
  }
  if (!response.ok) return;
  region.innerHTML = await response.text();
  if (window.htmx) window.htmx.process(region);
}

function schedule(region) {
  clearTimeout(timers.get(region));
  timers.set(region, setTimeout(() => refresh(region).catch(() => {}), DEBOUNCE_MS));
}

function patchBadges(ev) {
  if (ev.type === "domain") {
    for (const badge of document.querySelectorAll(`[data-state-for="${ev.host}:${ev.uuid}"]`)) {
      badge.className = `badge state-${ev.state}`;
      badge.dataset.state = ev.state;
      badge.textContent = ev.state_label || ev.state;
    }
  } else if (ev.type === "job") {
    const pct = Math.round(ev.progress);
    for (const bar of document.querySelectorAll(`[data-job-bar="${ev.id}"]`)) {
      bar.querySelector("span").style.width = `${pct}%`;
      bar.querySelector("em").textContent = `${pct}%`;
      bar.setAttribute("aria-valuenow", pct);
      bar.classList.toggle("done", ev.state === "succeeded");
      bar.classList.toggle("failed", ev.state === "failed");
    }
    for (const el of document.querySelectorAll(`[data-job-state="${ev.id}"]`)) {
      el.className = `badge job-${ev.state}`;
      el.textContent = ev.state;
    }
    for (const el of document.querySelectorAll(`[data-job-message="${ev.id}"]`)) el.textContent = ev.message;
  } else if (ev.type === "host") {
    for (const badge of document.querySelectorAll(`[data-host-status="${ev.host}"]`)) {
      badge.className = `badge ${ev.status}`;
      badge.textContent = ev.status;
      badge.title = ev.reason || "";
    }
  }
}

function handle(ev) {
  if (ev.type === "hello" || ev.type === "pong") return;
  patchBadges(ev);
  for (const region of document.querySelectorAll("[data-live]")) {
    if (concerns(region, ev)) schedule(region);
  }
  document.dispatchEvent(new CustomEvent("webvirt:event", { detail: ev }));
}

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${window.location.host}/ws/events/`);
  socket.addEventListener("open", () => {
    setStatus("live", "live");
    // Live usage figures only for what this page shows (the server checks each against the policy).
    const wanted = [...document.querySelectorAll("[data-metrics]")].map((el) => el.dataset.metrics);
    if (wanted.length) socket.send(JSON.stringify({ type: "subscribe", metrics: wanted }));
    backoff = 500;
    if (everConnected) document.querySelectorAll("[data-live]").forEach(schedule);
    everConnected = true;
  });
  socket.addEventListener("message", (msg) => handle(JSON.parse(msg.data)));
  socket.addEventListener("close", () => {
    setStatus("reconnecting…", "down");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  });
}

if (document.getElementById("live-status")) connect();
