// Screenshots in the domain list are taken only when asked for: a "Screen" button loads one.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-screenshot]");
  if (!button) return;
  const row = button.closest("tr");
  let holder = row.nextElementSibling;
  if (holder?.dataset.screenshotRow !== undefined) { holder.remove(); return; }
  holder = document.createElement("tr");
  holder.dataset.screenshotRow = "";
  const cell = document.createElement("td");
  cell.colSpan = row.children.length;
  const img = document.createElement("img");
  img.className = "screenshot-thumb";
  img.style.maxWidth = "360px";
  img.alt = "Screen of the domain";
  img.src = `${button.dataset.screenshot}?t=${Date.now()}`;
  img.addEventListener("error", () => { cell.textContent = "No screenshot: the domain is not running or its host does not answer."; });
  cell.append(img);
  holder.append(cell);
  row.after(holder);
});
