// mlgitops dashboard: progressive enhancement only; every table renders without JavaScript.
// The overview refreshes its rows in place (the server renders the same rows as a fragment),
// the filter applies as you type, and the commands of a model page get a copy button.
"use strict";
(function () {
  var REFRESH_MS = 5000;
  var rows = document.getElementById("rows");
  var form = document.getElementById("filter");
  var generated = document.getElementById("generated");
  var shown = document.getElementById("shown");

  function fragmentUrl() {
    var url = new URL(window.location.href);
    if (form) {
      var data = new FormData(form);
      url.search = "";
      data.forEach(function (value, key) { if (value) url.searchParams.set(key, value); });
    }
    return url;
  }

  var inFlight = false;
  function refresh() {
    if (!rows || inFlight) return;
    inFlight = true;
    var url = fragmentUrl();
    fetch(url.pathname + url.search, { headers: { "X-Fragment": "rows" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        if (shown) shown.textContent = response.headers.get("X-Shown") || shown.textContent;
        if (generated) generated.textContent = response.headers.get("X-Generated") || "";
        return response.text();
      })
      .then(function (html) { rows.innerHTML = html; })
      .catch(function (err) { if (generated) generated.textContent = "refresh failed: " + err.message; })
      .finally(function () { inFlight = false; });
  }

  if (rows) {
    window.setInterval(refresh, REFRESH_MS);
    if (form) {
      var timer = null;
      form.addEventListener("input", function () {
        window.clearTimeout(timer);
        timer = window.setTimeout(function () {
          var url = fragmentUrl();
          window.history.replaceState(null, "", url.pathname + url.search);
          refresh();
        }, 200);
      });
    }
  }

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-copy") || "";
      var done = function () { button.textContent = "copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { button.textContent = "select it"; });
      } else {
        var range = document.createRange();
        range.selectNodeContents(button.previousElementSibling);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "selected";
      }
    });
  });
})();
