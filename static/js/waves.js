// The Waves page: a wave's counts and state follow its "wave" events; a new state reloads the page
// (the wave moves to another table and its buttons change).
document.addEventListener("webvirt:event", (event) => {
  const ev = event.detail;
  if (ev.type !== "wave") return;
  const row = document.querySelector(`[data-wave="${ev.id}"]`);
  if (!row) return;
  const set = (name, text) => {
    const cell = row.querySelector(`[data-wave-${name}]`);
    if (cell) cell.textContent = text;
  };
  set("made", `${ev.made} / ${ev.planned}`);
  set("running", ev.running);
  set("booted", ev.booted);
  set("failed", ev.failed);
  const state = row.querySelector("[data-wave-state]");
  if (state && state.textContent !== ev.state) window.location.reload();
});
