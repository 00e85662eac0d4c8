// RedFlag pages work without this file; it adds conveniences only.
// No inline script anywhere: the Content-Security-Policy forbids it.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
});

// "Select all" checkboxes: <input type=checkbox data-select-all="name-of-boxes">
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!box.matches("[data-select-all]")) return;
  const form = box.form || document;
  form.querySelectorAll(`input[type=checkbox][name="${box.dataset.selectAll}"]`)
    .forEach((other) => { other.checked = box.checked; });
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const submitter = event.submitter;
  const question = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // A second click while the first submit is on its way does nothing; the server
  // also ignores a repeated form (each carries a one-time key).
  if (form.dataset.submitting) {
    event.preventDefault();
    return;
  }
  form.dataset.submitting = "1";
  if (submitter && submitter.name) {
    // A disabled button is not sent; keep its value.
    const hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = submitter.name; hidden.value = submitter.value;
    form.appendChild(hidden);
  }
  form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; });
});

// Live regions: <div data-live="/live/stream?..."> replaced by server-rendered HTML
// that arrives as server-sent events named "html" (the server escapes every value).
function connectLive(region) {
  const source = new EventSource(region.dataset.live);
  source.addEventListener("html", (event) => {
    region.innerHTML = event.data;
    region.dataset.updated = String(Date.now());
  });
  source.addEventListener("error", () => { region.dataset.connection = "retrying"; });
  source.addEventListener("open", () => { region.dataset.connection = "open"; });
}
document.querySelectorAll("[data-live]").forEach(connectLive);
