// Small behaviours every page shares. Kept tiny on purpose: pages work without it.

// Ask before any form that loses data or work is submitted (forms carry data-confirm="...").
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

import "./live.js";
import "./screenshots.js";
