// Bulk actions on the domain list. The page works without this (the ticked rows are posted as they
// are); the script adds what a list of hundreds needs:
// - the selection lives here, not in the rows, so a live refresh of the table (live.js replaces it
//   when an event arrives) or a new page of results ticks again what was ticked;
// - the page's box ticks every row shown, and then offers "all N that match this filter", which posts
//   the filter instead of ids;
// - a destructive action asks first, naming how many machines it will touch.

const form = document.getElementById("bulk-form");
const region = document.getElementById("domain-table");
const filters = document.querySelector("form.filters:not(#bulk-form)");
const selected = new Set();
let everything = false; // all that match the filter, on every page

const rows = () => [...region.querySelectorAll("input[data-bulk-row]")];
const total = () => Number(region.querySelector("input[data-bulk-page]")?.dataset.total || 0); // all that match
const count = () => (everything ? total() : selected.size);
const plural = (n) => `${n} machine${n === 1 ? "" : "s"}`;

function render() {
  const boxes = rows();
  for (const box of boxes) box.checked = everything || selected.has(box.value);
  const ticked = boxes.filter((box) => box.checked).length;
  const page = region.querySelector("input[data-bulk-page]");
  if (page) {
    page.checked = boxes.length > 0 && ticked === boxes.length;
    page.indeterminate = ticked > 0 && ticked < boxes.length;
  }
  const n = count();
  form.querySelector("[data-bulk-count]").textContent = everything
    ? `All ${n} that match this filter are selected.`
    : n ? `${n} selected.` : "Tick domains to act on several at once.";
  const all = form.querySelector("[data-bulk-all]");
  all.hidden = everything || !page?.checked || total() <= boxes.length;
  all.textContent = `Select all ${total()} that match this filter`;
  form.querySelector("[data-bulk-clear]").hidden = n === 0;
  for (const button of form.querySelectorAll("button[name=action]")) button.disabled = n === 0;
}

function hidden(name, value) {
  const input = document.createElement("input");
  Object.assign(input, { type: "hidden", name, value });
  input.dataset.bulkHidden = "";
  form.append(input);
}

if (form && region) {
  region.addEventListener("change", (event) => {
    const box = event.target;
    if (box.matches("input[data-bulk-row]")) {
      if (everything) { // unticking one row of "all that match" leaves the rows shown
        everything = false;
        for (const row of rows()) selected.add(row.value);
      }
      if (box.checked) selected.add(box.value); else selected.delete(box.value);
    } else if (box.matches("input[data-bulk-page]")) {
      everything = false;
      for (const row of rows()) { if (box.checked) selected.add(row.value); else selected.delete(row.value); }
    } else {
      return;
    }
    render();
  });
  form.querySelector("[data-bulk-all]").addEventListener("click", () => { everything = true; render(); });
  form.querySelector("[data-bulk-clear]").addEventListener("click", () => {
    everything = false;
    selected.clear();
    render();
    region.querySelector("input[data-bulk-page]")?.focus();
  });
  // Another filter means other matches: "all that match" no longer says which.
  filters?.addEventListener("input", () => { if (everything) { everything = false; render(); } });
  filters?.addEventListener("change", () => { if (everything) { everything = false; render(); } });
  // live.js and htmx replace the table's contents: tick again what is selected.
  new MutationObserver(render).observe(region, { childList: true });

  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    const n = count();
    if (button?.hasAttribute("data-destructive")
        && !window.confirm(`${button.textContent.trim()} ${plural(n)}? This cannot be undone.`)) {
      event.preventDefault();
      return;
    }
    for (const input of form.querySelectorAll("[data-bulk-hidden]")) input.remove();
    if (everything) {
      form.elements.scope.value = "filter";
      for (const name of ["search", "host", "state"]) hidden(name, filters?.elements[name]?.value || "");
    } else {
      form.elements.scope.value = "ids";
      const shown = new Set(rows().filter((box) => box.checked).map((box) => box.value));
      for (const id of selected) if (!shown.has(id)) hidden("ids", id); // ticked on another page
    }
  });
  render();
}
