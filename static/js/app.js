// Small behaviours htmx does not cover: closing <details> menus, dismissing flash messages,
// and telling the person when an in-place update failed instead of doing nothing.
(function () {
  "use strict";

  function closeMenus(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      var alert = dismiss.closest(".alert");
      if (alert) alert.remove();
      return;
    }
    closeMenus(event.target.closest("details[data-menu]"));
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details[data-menu][open]");
    if (open) {
      open.removeAttribute("open");
      open.querySelector("summary").focus();
    }
  });

  // On phones the sidebar is a sideways-scrolling strip: start it at the current page.
  function revealCurrentNavLink() {
    var strip = document.querySelector(".sidebar-inner");
    var current = strip && strip.querySelector("[aria-current='page']");
    if (!current || strip.scrollWidth <= strip.clientWidth) return;
    strip.scrollLeft = current.offsetLeft - (strip.clientWidth - current.offsetWidth) / 2;
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", revealCurrentNavLink);
  } else {
    revealCurrentNavLink();
  }
  window.addEventListener("resize", revealCurrentNavLink);

  function showError(text) {
    var region = document.getElementById("flash-region");
    var template = document.getElementById("error-alert");
    if (!region || !template) return;
    var alert = template.content.firstElementChild.cloneNode(true);
    alert.querySelector(".alert-body").textContent = text;
    region.replaceChildren(alert);
    region.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    // Nothing changed on the server, so put a form's controls back the way they were
    // (a role <select> would otherwise show a role the person does not have).
    var form = event.detail.elt && event.detail.elt.closest("form");
    if (form && form.hasAttribute("hx-trigger")) form.reset();
    if (status === 403) {
      showError("You do not have permission to do that. Ask an owner or admin of this workspace.");
    } else if (status === 404) {
      showError("That no longer exists. Reload the page to see the latest state.");
    } else {
      showError("Something went wrong on our side and nothing was changed. Try again in a moment.");
    }
  });

  document.addEventListener("htmx:sendError", function () {
    showError("Tributary could not be reached. Check your connection and try again.");
  });
})();
