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

  // Live regions re-read the page they are on and swap in their new content, so a table or a status
  // changes without a reload. One request per tick serves every region; a region pauses while the tab
  // is hidden, while focus is inside it, or while its toggle is off.
  function startLive(regions) {
    const seconds = Math.max(2, Math.min(...regions.map((region) => Number(region.dataset.liveInterval || 10))));
    let busy = false;
    let timer = null;
    // What the server last sent for each region: local times rewrite the DOM, so compare with this.
    const served = new Map(regions.map((region) => [region, region.innerHTML]));

    function idle(region) {
      if (region.dataset.livePaused === "true") return false;
      return !(region.contains(document.activeElement) && document.activeElement !== region);
    }

    async function refresh() {
      const due = regions.filter(idle);
      if (busy || document.hidden || !due.length) return;
      busy = true;
      try {
        const response = await fetch(window.location.href, {
          headers: { Accept: "text/html" },
          credentials: "same-origin",
          cache: "no-store",
        });
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.clearInterval(timer);
          return;
        }
        if (!response.ok) return;
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const region of due) {
          const update = fresh.getElementById(region.id);
          if (!update || update.innerHTML === served.get(region)) continue;
          served.set(region, update.innerHTML);
          region.innerHTML = update.innerHTML;
          localizeTimes(region);
          region.dispatchEvent(new CustomEvent("borealis:updated", { bubbles: true }));
        }
        document.querySelectorAll("[data-live-stamp]").forEach((stamp) => {
          stamp.textContent = absolute.format(new Date());
        });
      } catch (_error) {
        // The server is restarting or the network blinked: the next tick tries again.
      } finally {
        busy = false;
      }
    }

    timer = window.setInterval(refresh, seconds * 1000);
  }

  // The workspace switcher goes at once; its button is there for a browser without this script.
  document.addEventListener("change", (event) => {
    const select = event.target.closest("[data-submit-on-change]");
    if (select && select.form) select.form.requestSubmit();
  });

  document.addEventListener("change", (event) => {
    const toggle = event.target.closest("[data-live-toggle]");
    if (!toggle) return;
    const region = document.querySelector(toggle.dataset.liveToggle);
    if (region) region.dataset.livePaused = toggle.checked ? "false" : "true";
  });

  document.addEventListener("DOMContentLoaded", () => {
    const regions = Array.from(document.querySelectorAll("[data-live][id]"));
    if (regions.length) startLive(regions);
    localizeTimes(document);
    window.setInterval(() => {
      document.querySelectorAll('time[data-time="relative"]').forEach((element) => {
        const date = new Date(element.getAttribute("datetime"));
        if (!Number.isNaN(date.getTime())) element.textContent = relative(date);
      });
    }, 30000);
  });
})();
