// Triage workspace: the queue refreshes itself; the alert page gets a comparison slider and keyboard
// shortcuts. Everything here is an enhancement: the pages work without it.
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && !/^(radio|checkbox|range|button|submit)$/.test(target.type)) ||
      (target && target.isContentEditable);
  }

  // --- Queue: fetch the rows every 30 s while the tab is visible; swap them only when they changed.
  var table = document.querySelector("table.queue[data-refresh]");
  if (table) {
    var body = $("queue-rows"), status = $("queue-status"), last = body.innerHTML.trim();
    var refresh = function () {
      if (document.hidden) { return; }
      fetch(table.dataset.refresh, { credentials: "same-origin", headers: { Accept: "text/html" }, redirect: "manual" })
        .then(function (r) {
          if (r.type === "opaqueredirect" || r.status === 401 || r.status === 302) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null || html === undefined) { return; }
          html = html.trim();
          if (html !== last) { body.innerHTML = html; last = html; }
          var now = new Date();
          status.textContent = "Updated " + now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) +
            " · " + body.querySelectorAll("tr[data-alert]").length + " shown. Updates by itself every 30 s.";
        })
        .catch(function () { /* offline for a moment: try again next time */ });
    };
    setInterval(refresh, 30000);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
    document.addEventListener("keydown", function (e) {
      if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) { return; }
      if (e.key === "j" || e.key === "k") {
        var links = Array.prototype.slice.call(document.querySelectorAll("a.open-alert"));
        if (!links.length) { return; }
        var i = links.indexOf(document.activeElement);
        i = e.key === "j" ? Math.min(links.length - 1, i + 1) : Math.max(0, i - 1);
        links[i].focus();
        e.preventDefault();
      }
    });
  }

  // --- Alert page: comparison slider.
  var compareBlock = $("compare-block");
  if (compareBlock) {
    var range = $("compare-range"), over = $("compare-over");
    var clip = function () { over.style.clipPath = "inset(0 0 0 " + range.value + "%)"; };
    range.addEventListener("input", clip);
    compareBlock.hidden = false;
    clip();
  }

  // --- Alert page: outcome-dependent fields.
  var form = $("resolve-form");
  function syncOutcome() {
    if (!form) { return; }
    var chosen = form.querySelector("input[name=outcome]:checked");
    var value = chosen ? chosen.value : "";
    form.querySelector(".when-rephoto").hidden = value !== "rephoto";
    form.querySelector(".when-visit").hidden = value !== "visit";
  }
  if (form) {
    form.addEventListener("change", syncOutcome);
    syncOutcome();
  }

  // --- Alert page: keyboard shortcuts.
  if (!$("keys-help")) { return; }
  var views = { a: "view-aligned", o: "view-outline", h: "view-heatmap", s: "view-saliency" };
  document.addEventListener("keydown", function (e) {
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var key = e.key;
    if (key === "?") { $("keys-help").showModal(); e.preventDefault(); return; }
    if (key === "q") { window.location.assign(document.querySelector(".crumbs a").href); return; }
    if (key === "c" && $("claim-button")) { $("claim-button").click(); return; }
    if (views[key] && $(views[key])) { $(views[key]).checked = true; e.preventDefault(); return; }
    if ((key === "[" || key === "]") && $("compare-range")) {
      var r = $("compare-range");
      r.value = String(Math.max(0, Math.min(100, Number(r.value) + (key === "]" ? 10 : -10))));
      r.dispatchEvent(new Event("input"));
      return;
    }
    if (form) {
      var radio = form.querySelector("input[name=outcome][data-key='" + key + "']");
      if (radio) {
        radio.checked = true;
        syncOutcome();
        $("resolve-button").focus();
        e.preventDefault();
      }
    }
  });
})();
