// Borealis pages: local times, copy buttons, confirmations and live regions. No dependencies.
(() => {
  "use strict";

  const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const UNITS = [
    ["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
    ["hour", 3600], ["minute", 60], ["second", 1],
  ];

  function announce(message) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(() => { region.textContent = message; }, 50);
  }

  function relative(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    for (const [unit, size] of UNITS) {
      if (Math.abs(seconds) >= size || unit === "second") {
        if (unit === "second" && Math.abs(seconds) < 30) return "just now";
        return relativeFormat.format(Math.round(seconds / size), unit);
      }
    }
    return absolute.format(date);
  }

  // Server renders UTC; the viewer reads their own zone. The exact time stays in the tooltip.
  function localizeTimes(root) {
    root.querySelectorAll("time[data-time]").forEach((element) => {
      const date = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) return;
      element.title = full.format(date);
      element.textContent = element.dataset.time === "relative" ? relative(date) : absolute.format(date);
    });
  }

  function fallbackCopy(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    let copied = false;
    try { copied = document.execCommand("copy"); } catch (_error) { copied = false; }
    area.remove();
    return copied;
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (_error) { /* fall back */ }
    }
    return fallbackCopy(text);
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = "value" in source ? source.value : source.textContent;
    const copied = await copyText(text.trim());
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = copied ? "Copied" : "Select and copy by hand";
    announce(copied ? "Copied to the clipboard." : "Copying failed; select the text and copy it by hand.");
    window.setTimeout(() => { button.textContent = label; }, 2500);
  });

  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // A live region re-reads the same page and swaps in its new content, so the table or the status
  // changes without a reload. It pauses while the tab is hidden or while focus is inside it.
  function startLive(element) {
    const seconds = Math.max(2, Number(element.dataset.liveInterval || 10));
    let timer = null;
    let busy = false;

    async function refresh() {
      if (busy || document.hidden || element.dataset.livePaused === "true") return;
      if (element.contains(document.activeElement) && document.activeElement !== element) return;
      busy = true;
      try {
        const response = await fetch(element.dataset.liveSrc || window.location.href, {
          headers: { Accept: "text/html" },
          credentials: "same-origin",
          cache: "no-store",
        });
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.clearInterval(timer);
          return;
        }
        if (!response.ok) return;
        const fresh = new DOMParser()
          .parseFromString(await response.text(), "text/html")
          .getElementById(element.id);
        if (!fresh) return;
        if (fresh.innerHTML !== element.innerHTML) {
          element.innerHTML = fresh.innerHTML;
          localizeTimes(element);
          element.dispatchEvent(new CustomEvent("borealis:updated", { bubbles: true }));
        }
        if (fresh.dataset.liveDone === "true") {
          element.dataset.liveDone = "true";
          window.clearInterval(timer);
        }
      } catch (_error) {
        // The server is restarting or the network blinked: the next tick tries again.
      } finally {
        busy = false;
        const stamp = document.querySelector(`[data-live-stamp="${element.id}"]`);
        if (stamp) stamp.textContent = absolute.format(new Date());
      }
    }

    if (element.dataset.liveDone === "true") return;
    timer = window.setInterval(refresh, seconds * 1000);
  }

  document.addEventListener("change", (event) => {
    const toggle = event.target.closest("[data-live-toggle]");
    if (!toggle) return;
    const region = document.querySelector(toggle.dataset.liveToggle);
    if (region) region.dataset.livePaused = toggle.checked ? "false" : "true";
  });

  document.addEventListener("DOMContentLoaded", () => {
    localizeTimes(document);
    document.querySelectorAll("[data-live][id]").forEach(startLive);
    window.setInterval(() => {
      document.querySelectorAll('time[data-time="relative"]').forEach((element) => {
        const date = new Date(element.getAttribute("datetime"));
        if (!Number.isNaN(date.getTime())) element.textContent = relative(date);
      });
    }, 30000);
  });
})();
