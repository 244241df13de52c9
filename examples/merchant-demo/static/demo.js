// The demo merchant's page script: says hello to cardkeep's hosted card page in the iframe and
// shows the outcome the page posts back. Loaded in <head>, so it listens before the iframe loads.
(function () {
  "use strict";

  var TEXT = {
    authorized: "Card saved",
    declined: "Card declined: try another card",
    card_expired: "Card expired",
  };

  function booking() {
    return document.getElementById("booking");
  }

  function cardFrame() {
    return document.getElementById("card-frame");
  }

  function sayHello() {
    var root = booking();
    var frame = cardFrame();
    if (!root || !frame || !frame.contentWindow) return;
    // targetOrigin: the message is delivered only if the frame shows the PCI listener's page.
    frame.contentWindow.postMessage({ type: "cardkeep.hello" }, root.dataset.pciOrigin);
  }

  function refreshStatus(root) {
    var url = "/bookings/" + encodeURIComponent(root.dataset.bookingId) + "/status";
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (resp) {
        return resp.ok ? resp.json() : null;
      })
      .then(function (doc) {
        var el = document.getElementById("si-status");
        if (doc && typeof doc.setupIntentStatus === "string" && el) {
          el.textContent = doc.setupIntentStatus;
        }
      })
      .catch(function () {
        /* the status shown stays as rendered; a reload reads it again */
      });
  }

  // The iframe's load event does not bubble, but it passes the document in the capture phase.
  document.addEventListener(
    "load",
    function (event) {
      if (event.target === cardFrame()) sayHello();
    },
    true
  );

  window.addEventListener("message", function (event) {
    var root = booking();
    if (!root || event.origin !== root.dataset.pciOrigin) return;
    var frame = cardFrame();
    if (frame && event.source !== frame.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== "object" || data.type !== "cardkeep.setup_intent") return;
    if (data.setupIntentId !== root.dataset.setupIntentId) return;
    if (!Object.prototype.hasOwnProperty.call(TEXT, data.outcome)) return;
    var outcome = document.getElementById("outcome");
    if (outcome) {
      outcome.textContent = TEXT[data.outcome];
      outcome.dataset.outcome = data.outcome;
      outcome.dataset.status = String(data.status);
    }
    if (data.outcome !== "declined") {
      // The link is used up (or the card expired): a fresh one would not help this booking.
      var refresh = document.getElementById("refresh");
      if (refresh && refresh.form) refresh.form.hidden = true;
    }
    refreshStatus(root);
  });
})();
