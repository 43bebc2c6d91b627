// Small behaviours htmx does not cover: closing <details> menus, dismissing flash messages,
// telling the person when an in-place update failed instead of doing nothing, copy buttons,
// and what the Content-Security-Policy keeps out of the markup (hx-on, htmx expressions, style="").
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
    // The sidebar strip, and a connection's tab bar (also a sideways strip on phones).
    [".sidebar-inner", ".tab-bar"].forEach(function (selector) {
      var strip = document.querySelector(selector);
      var current = strip && strip.querySelector("[aria-current='page']");
      if (!current || strip.scrollWidth <= strip.clientWidth) return;
      var left = current.getBoundingClientRect().left - strip.getBoundingClientRect().left + strip.scrollLeft;
      strip.scrollLeft = left - (strip.clientWidth - current.offsetWidth) / 2;
    });
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

  // --- Under the Content-Security-Policy ------------------------------------------------
  // htmx may not evaluate strings (allowEval is off), and markup may carry no hx-on or style
  // attributes, so what those did is done here, keyed on data- attributes.

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-live-toggle]");
    if (toggle) {
      // Pause or resume the live region around the button; its [data-poll] elements skip their turns.
      var live = toggle.closest("[data-live]");
      if (!live) return;
      var pausing = live.dataset.live === "on";
      live.dataset.live = pausing ? "off" : "on";
      toggle.setAttribute("aria-pressed", String(pausing));
      var label = toggle.querySelector(".toggle-label");
      if (label) label.textContent = pausing ? "Resume" : "Pause";
      return;
    }
    var clear = event.target.closest("[data-clear-panel]");
    if (clear) {
      // A Cancel link that, shown inside its panel, empties the panel instead of navigating.
      var panel = clear.closest(clear.dataset.clearPanel);
      if (panel) {
        event.preventDefault();
        panel.replaceChildren();
      }
    }
  });

  document.addEventListener("change", function (event) {
    var all = event.target.closest("input[data-check-all]");
    if (!all) return;
    var scope = all.closest("table, form") || document;
    scope.querySelectorAll(all.dataset.checkAll).forEach(function (box) {
      box.checked = all.checked;
    });
  });

  // Polling elements skip a turn while the tab is hidden or their live region is paused.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.hasAttribute("data-poll")) return;
    if (document.visibilityState === "hidden" || elt.closest("[data-live='off']")) event.preventDefault();
  });

  // data-after-param="after": ask only for rows newer than the newest one shown.
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    var name = elt && elt.getAttribute("data-after-param");
    if (!name) return;
    var newest = elt.querySelector(":scope > [data-seq]");
    event.detail.parameters[name] = newest ? newest.dataset.seq : "0";
  });

  // data-visible-seqs="#list": ask about the rows of that list now on screen (their data-seq,
  // as repeated `seq` parameters, at most 100), so a refresh stays small however long the list.
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    var selector = elt && elt.getAttribute("data-visible-seqs");
    if (!selector) return;
    var list = document.querySelector(selector);
    var seqs = [];
    var bottom = window.innerHeight || document.documentElement.clientHeight;
    if (list) {
      list.querySelectorAll(":scope > [data-seq]").forEach(function (row) {
        if (seqs.length >= 100) return;
        var box = row.getBoundingClientRect();
        if (box.bottom > 0 && box.top < bottom) seqs.push(row.dataset.seq);
      });
    }
    event.detail.parameters.seq = seqs;
  });

  // data-keep-rows="200": a list that grows at the top drops its oldest rows beyond that.
  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.detail.target;
    var keep = list && parseInt(list.getAttribute("data-keep-rows"), 10);
    if (!keep) return;
    var rows = list.querySelectorAll(":scope > .event-row");
    for (var i = rows.length - 1; i >= keep; i--) rows[i].remove();
  });

  // Sizes that come from data (progress bars, proportions): CSSOM, which the policy allows.
  function within(root, selector) {
    var found = Array.prototype.slice.call(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  function applySizes(root) {
    if (!root || !root.querySelectorAll) return;
    within(root, "[data-fill]").forEach(function (el) {
      // A swapped-in bar starts at its value rather than sliding up from nothing.
      el.style.transition = "none";
      el.style.width = Math.max(0, Math.min(100, parseFloat(el.dataset.fill) || 0)) + "%";
      void el.offsetWidth;
      el.style.transition = "";
    });
    within(root, "[data-grow]").forEach(function (el) {
      el.style.flexGrow = String(parseFloat(el.dataset.grow) || 0);
    });
  }

  document.addEventListener("htmx:load", function (event) {
    applySizes(event.target);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { applySizes(document); });
  } else {
    applySizes(document);
  }

  // --- Copy buttons ------------------------------------------------------------------------
  // data-copy="text" copies that text; data-copy-from="id" copies the text of that element.
  // The button says "Copied" for a moment and the status region announces it.

  function announce(text) {
    var region = document.getElementById("live-status");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function copyWithSelection(text) {
    var focused = document.activeElement;
    var buffer = document.createElement("textarea");
    buffer.className = "copy-buffer";
    buffer.value = text;
    buffer.setAttribute("readonly", "");
    document.body.appendChild(buffer);
    buffer.select();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    buffer.remove();
    if (focused && focused.focus) focused.focus();  // keyboard users stay on the button
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return copyWithSelection(text); });
    }
    return copyWithSelection(text);
  }

  function copySource(button) {
    if (button.hasAttribute("data-copy-from")) {
      var source = document.getElementById(button.getAttribute("data-copy-from"));
      return source ? source.textContent.trim() : "";
    }
    return button.getAttribute("data-copy") || "";
  }

  function showCopied(button, ok, selected) {
    var label = button.querySelector(".copy-label");
    window.clearTimeout(button._copyTimer);
    button.classList.toggle("is-copied", ok);
    if (label) label.textContent = ok ? "Copied" : selected ? "Press Ctrl+C" : "Not copied";
    announce(ok ? "Copied to the clipboard"
      : selected ? "Could not copy: the text is selected, press Ctrl+C or Cmd+C"
      : "Could not copy to the clipboard");
    button._copyTimer = window.setTimeout(function () {
      button.classList.remove("is-copied");
      if (label) label.textContent = "Copy";
    }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-from]");
    if (!button) return;
    var text = copySource(button);
    if (!text) return;
    copyText(text).then(
      function () { showCopied(button, true); },
      function () {
        // Nothing could reach the clipboard: select the text so the person can copy it.
        var source = document.getElementById(button.getAttribute("data-copy-from"));
        if (source) window.getSelection().selectAllChildren(source);
        showCopied(button, false, Boolean(source));
      }
    );
  });

  // A form answered 422: bring the first field with an error into view and focus it, inside
  // what htmx swapped, or on a page whose [data-focus-invalid] area came back with errors.
  function focusInvalid(root) {
    var field = root && root.querySelector && root.querySelector('[aria-invalid="true"]');
    if (!field) return;
    field.scrollIntoView({ block: "center" });
    field.focus({ preventScroll: true });
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var xhr = event.detail && event.detail.xhr;
    if (xhr && xhr.status === 422) focusInvalid(event.detail.target);
  });

  function focusInvalidOnLoad() {
    document.querySelectorAll("[data-focus-invalid]").forEach(focusInvalid);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", focusInvalidOnLoad);
  else focusInvalidOnLoad();
})();
