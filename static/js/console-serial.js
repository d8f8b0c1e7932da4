// The serial console: xterm.js over /ws/console/serial/<id>/. Terminal bytes travel in binary
// frames both ways; text frames carry JSON control messages (busy, ready, taken, takeover).
import { Terminal } from "/static/vendor/@xterm/xterm/lib/xterm.mjs";
import { FitAddon } from "/static/vendor/@xterm/addon-fit/lib/addon-fit.mjs";
import { bar, say, setStatus, show, ticketUrl } from "./console-common.js";

const info = bar("serial-bar");
const root = info.el;
const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000,
  fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace', theme: { background: "#0f1623" } });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById("terminal"));
fit.fit();
window.addEventListener("resize", () => fit.fit());
const encoder = new TextEncoder();
let socket = null;
let wanted = false;

async function connect() {
  wanted = true;
  setStatus("connecting…", "connecting");
  show(root, "connect", false);
  show(root, "disconnect", true);
  show(root, "takeover", false);
  let url;
  try {
    url = await ticketUrl(info, "serial");
  } catch (err) {
    fail(err.message);
    return;
  }
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("message", (msg) => {
    if (typeof msg.data !== "string") { term.write(new Uint8Array(msg.data)); return; }
    const ev = JSON.parse(msg.data);
    if (ev.type === "ready") {
      setStatus("connected", "connected");
      say("");
      show(root, "takeover", false);
      term.focus();
    } else if (ev.type === "busy") {
      setStatus("in use", "failed");
      say(`${ev.holder || "Someone else"} has this serial console open. Take it over? They will be told.`, "warning");
      show(root, "takeover", true);
    } else if (ev.type === "taken") {
      wanted = false;
      say(`${ev.by} took over this serial console.`, "warning");
    }
  });
  socket.addEventListener("close", (e) => {
    socket = null;
    show(root, "takeover", false);
    show(root, "connect", true);
    show(root, "disconnect", false);
    setStatus("not connected", wanted ? "failed" : "idle");
    if (wanted && e.reason) say(e.reason, "error");
    else if (wanted) say("The console connection closed. Connect again to continue.", "warning");
    else if (!document.getElementById("console-msg").textContent) say("Disconnected.");
    wanted = false;
  });
}

function fail(message) {
  wanted = false;
  setStatus("not connected", "failed");
  show(root, "connect", true);
  show(root, "disconnect", false);
  say(message, "error");
}

term.onData((data) => {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
});

root.addEventListener("click", (event) => {
  const action = event.target.closest("[data-console]")?.dataset.console;
  if (action === "connect") { say(""); connect(); }
  else if (action === "disconnect") { wanted = false; socket?.close(); }
  else if (action === "takeover" && socket) {
    socket.send(JSON.stringify({ type: "takeover" }));
    show(root, "takeover", false);
    say("Taking over…");
  }
});

if (info.problem) {
  setStatus("unavailable", "failed");
  say(info.problem, "error");
  root.querySelector('[data-console="connect"]').disabled = true;
} else {
  connect();
}
window.webvirtConsole = { term, get socket() { return socket; } };
