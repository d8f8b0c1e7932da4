// What the VNC and serial console pages share: asking for a ticket, status and messages.

export function bar(id) {
  const el = document.getElementById(id);
  return { el, pk: el.dataset.domain, name: el.dataset.name, csrf: el.dataset.csrf, problem: el.dataset.problem };
}

// A single-use ticket from the API; the answer's path is opened on this page's own origin, so the
// console works behind any reverse proxy that forwards WebSockets.
export async function ticketUrl(info, kind) {
  const response = await fetch(`/api/v1/domains/${info.pk}/console/`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": info.csrf },
    body: JSON.stringify({ kind }),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `The console could not be opened (HTTP ${response.status}).`);
  if (!data.path.startsWith("/")) return data.url; // a console gateway on another origin
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${data.path}`;
}

export function setStatus(text, state) {
  const el = document.getElementById("console-status");
  el.textContent = text;
  el.dataset.state = state;
  el.className = `badge console-${state}`;
}

export function say(text, kind = "") {
  const el = document.getElementById("console-msg");
  el.hidden = !text;
  el.className = `msg ${kind}`;
  el.textContent = text || "";
}

export function show(root, name, visible) {
  const el = root.querySelector(`[data-console="${name}"]`);
  if (el) el.hidden = !visible;
}

export function enable(root, names, on) {
  for (const name of names) {
    const el = root.querySelector(`[data-console="${name}"]`);
    if (el) el.disabled = !on;
  }
}

document.querySelector('[data-console="window"]')?.addEventListener("click", () => {
  const url = new URL(window.location.href);
  url.searchParams.set("window", "1");
  window.open(url.toString(), `console-${url.pathname}`, "width=1100,height=800");
});
