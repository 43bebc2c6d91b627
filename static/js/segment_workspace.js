// The Segment workspace pages: parts read from Segment load in place (htmx). The server
// answers each within its budget; this only covers an answer that never comes, or an error
// page, so a spinner never spins forever.
(function () {
  "use strict";

  function say(part, text) {
    var body = document.createElement("div");
    body.className = "card-body";
    var alert = document.createElement("div");
    alert.className = "alert alert-warning";
    alert.setAttribute("role", "alert");
    var words = document.createElement("div");
    words.className = "alert-body";
    words.textContent = text;
    alert.appendChild(words);
    body.appendChild(alert);
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "btn btn-secondary";
    retry.textContent = "Try again";
    retry.addEventListener("click", function () { window.location.reload(); });
    body.appendChild(retry);
    part.removeAttribute("aria-busy");
    part.replaceChildren(body);
  }

  function partOf(event) {
    var elt = event.detail && event.detail.elt;
    return elt && elt.closest ? elt.closest("[data-segment-part]") : null;
  }

  document.addEventListener("htmx:timeout", function (event) {
    var part = partOf(event);
    if (part) say(part, "Segment did not answer in time for " + (part.dataset.partName || "this part") + ". Try again in a moment.");
  });

  document.addEventListener("htmx:responseError", function (event) {
    var part = partOf(event);
    if (part && part.getAttribute("aria-busy") === "true") say(part, "This part could not be loaded. Try again in a moment.");
  });

  document.addEventListener("htmx:sendError", function (event) {
    var part = partOf(event);
    if (part && part.getAttribute("aria-busy") === "true") say(part, "Tributary could not be reached. Check your connection and try again.");
  });
})();
