// The graphical console: noVNC over /ws/console/vnc/<id>/, opened with a fresh ticket each time.
import RFB from "/static/vendor/@novnc/novnc/core/rfb.js";
import { bar, enable, say, setStatus, show, ticketUrl } from "./console-common.js";

const info = bar("vnc-bar");
const root = info.el;
const screen = document.getElementById("screen");
const CONTROLS = ["cad", "keys", "paste", "screenshot"];
const K = { ctrl: 0xffe3, alt: 0xffe9, shift: 0xffe1, super: 0xffeb, backspace: 0xff08, tab: 0xff09, escape: 0xff1b,
  print: 0xff61, delete: 0xffff, enter: 0xff0d };
for (let n = 1; n <= 12; n++) K[`f${n}`] = 0xffbd + n;
let rfb = null;
let wanted = false; // the user wants to be connected: reconnect after a drop
let retry = 0;
let closeReason = "";

async function connect() {
  wanted = true;
  setStatus("connecting…", "connecting");
  show(root, "connect", false);
  show(root, "disconnect", true);
  let url;
  try {
    url = await ticketUrl(info, "vnc");
  } catch (err) {
    wanted = false;
    fail(err.message);
    return;
  }
  closeReason = "";
  rfb = new RFB(screen, url, { wsProtocols: ["binary"] });
  rfb.scaleViewport = root.querySelector('[data-console="fit"]').checked;
  rfb.background = "#0f1623";
  // The server says why it closed (domain off, VNC unreachable) in the close reason; noVNC does not pass it on.
  rfb._sock?._websocket?.addEventListener("close", (e) => { closeReason = e.reason || ""; });
  rfb.addEventListener("connect", () => {
    retry = 0;
    setStatus("connected", "connected");
    say("");
    enable(root, CONTROLS, true);
    rfb.focus();
  });
  rfb.addEventListener("disconnect", (e) => {
    enable(root, CONTROLS, false);
    rfb = null;
    if (!wanted) { setStatus("not connected", "idle"); say("Disconnected."); return; }
    if (closeReason) { wanted = false; fail(closeReason); return; }
    retry += 1;
    const delay = Math.min(1000 * 2 ** (retry - 1), 10000);
    setStatus("reconnecting…", "connecting");
    say(`${e.detail.clean ? "The console connection closed" : "The console connection dropped"}; reconnecting in ${Math.round(delay / 1000)} s…`, "warning");
    setTimeout(() => { if (wanted && !rfb) connect(); }, delay);
  });
  rfb.addEventListener("securityfailure", (e) => fail(`The VNC server refused the connection: ${e.detail.reason || "security failure"}.`));
  rfb.addEventListener("credentialsrequired", () => {
    wanted = false;
    rfb.disconnect();
    fail("The VNC server asks for a password webvirt does not have.");
  });
}

function fail(message) {
  setStatus("not connected", "failed");
  show(root, "connect", true);
  show(root, "disconnect", false);
  say(message, "error");
}

function disconnect() {
  wanted = false;
  show(root, "connect", true);
  show(root, "disconnect", false);
  if (rfb) rfb.disconnect();
}

function combo(spec) {
  const keys = spec.split("+").map((k) => K[k] ?? k.charCodeAt(0));
  for (const key of keys) rfb.sendKey(key, null, true);
  for (const key of [...keys].reverse()) rfb.sendKey(key, null, false);
}

const SHIFTED = '~!@#$%^&*()_+{}|:"<>?';
function typeText(text) {
  for (const ch of text.replace(/\r\n/g, "\n")) {
    if (ch === "\n") { combo("enter"); continue; }
    if (ch === "\t") { combo("tab"); continue; }
    const code = ch.codePointAt(0);
    const keysym = code < 0x100 ? code : 0x01000000 + code;
    const shift = (ch >= "A" && ch <= "Z") || SHIFTED.includes(ch);
    if (shift) rfb.sendKey(K.shift, null, true);
    rfb.sendKey(keysym, null, true);
    rfb.sendKey(keysym, null, false);
    if (shift) rfb.sendKey(K.shift, null, false);
  }
}

root.addEventListener("click", (event) => {
  const action = event.target.closest("[data-console]")?.dataset.console;
  if (action === "connect") connect();
  else if (action === "disconnect") disconnect();
  else if (action === "cad" && rfb) rfb.sendCtrlAltDel();
  else if (action === "paste" && rfb) document.getElementById("paste-dialog").showModal();
  else if (action === "fullscreen") screen.requestFullscreen?.();
  else if (action === "screenshot" && rfb) {
    const link = document.createElement("a");
    link.href = rfb.toDataURL("image/png");
    link.download = `${info.name}-${new Date().toISOString().replace(/[:.]/g, "-")}.png`;
    link.click();
  }
});
root.querySelector('[data-console="keys"]').addEventListener("change", (event) => {
  if (rfb && event.target.value) combo(event.target.value);
  event.target.value = "";
  rfb?.focus();
});
root.querySelector('[data-console="fit"]').addEventListener("change", (event) => {
  if (rfb) rfb.scaleViewport = event.target.checked;
});
document.getElementById("paste-dialog").addEventListener("close", (event) => {
  const text = document.getElementById("paste-text");
  if (event.target.returnValue === "type" && rfb && text.value) typeText(text.value);
  text.value = "";
  rfb?.focus();
});

if (info.problem) {
  setStatus("unavailable", "failed");
  say(info.problem, "error");
  enable(root, ["connect"], false);
} else {
  connect();
}
window.webvirtConsole = { get rfb() { return rfb; } };
