// The Filters tab: show the action's own fields (the share to keep for sample, the properties
// for drop/allow properties) and hide the others. Without this script every field shows.
(function () {
  "use strict";
  function update(form) {
    var action = form.querySelector("select[name=action]");
    if (!action) { return; }
    form.querySelectorAll("[data-filter-for]").forEach(function (part) {
      part.hidden = part.getAttribute("data-filter-for").split(" ").indexOf(action.value) === -1;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-filter-form]").forEach(function (form) {
      update(form);
      form.addEventListener("change", function (event) {
        if (event.target.name === "action") { update(form); }
      });
    });
  });
})();
