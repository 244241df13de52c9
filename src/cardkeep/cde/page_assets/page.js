/* cardkeep's hosted card page (CONTRACT §9): checks the card in the browser, sends it to the
   card endpoint with the client session secret, and tells the parent window the outcome by the
   hello handshake, only ever to an origin the account allows (never "*"). Served with its SRI
   hash; the page's CSP runs no other script. */
(function () {
  "use strict";

  var VERSION = "2025-09-10";
  var root = document.getElementById("setup");
  var form = document.getElementById("card-form");
  if (!root || !form) { return; }

  var setupIntentId = root.getAttribute("data-setup-intent-id");
  var allowed = JSON.parse(root.getAttribute("data-origins") || "[]");
  var redirectUrl = root.getAttribute("data-redirect-url") || "";
  var secret = new URLSearchParams(window.location.search).get("clientSessionSecret") || "";
  var framed = window.parent !== window;
  var parentOrigin = null; // set by a hello from the parent window on an allowed origin

  var fields = {
    name: document.getElementById("name"),
    number: document.getElementById("number"),
    expiry: document.getElementById("expiry"),
    cvv: document.getElementById("cvv"),
    consent: document.getElementById("consent")
  };
  var brandEl = document.getElementById("brand");
  var formError = document.getElementById("form-error");
  var result = document.getElementById("result");
  var submit = document.getElementById("submit");

  // --- the handshake --------------------------------------------------------------------

  function originAllowed(origin) {
    for (var i = 0; i < allowed.length; i++) {
      var rule = allowed[i];
      if (rule.slice(-2) === ":*") {
        var base = rule.slice(0, -2);
        if (origin === base) { return true; }
        if (origin.indexOf(base + ":") === 0 && /^[0-9]+$/.test(origin.slice(base.length + 1))) {
          return true;
        }
      } else if (origin === rule) {
        return true;
      }
    }
    return false;
  }

  window.addEventListener("message", function (event) {
    if (!framed || event.source !== window.parent) { return; }
    var data = event.data;
    if (!data || typeof data !== "object" || data.type !== "cardkeep.hello") { return; }
    if (originAllowed(event.origin)) { parentOrigin = event.origin; }
  });

  function tellParent(status, outcome) {
    if (!framed || parentOrigin === null) { return; }
    window.parent.postMessage({
      type: "cardkeep.setup_intent",
      setupIntentId: setupIntentId,
      status: status,
      outcome: outcome
    }, parentOrigin);
  }

  function redirectAfter(status) {
    if (framed || !/^https?:\/\//i.test(redirectUrl)) { return false; }
    var url = new URL(redirectUrl);
    url.searchParams.set("setupIntentId", setupIntentId);
    url.searchParams.set("status", status);
    window.location.assign(url.toString());
    return true;
  }

  // --- card checks (the server checks everything again) -----------------------------------

  function digits(value) { return value.replace(/[\s-]/g, ""); }

  function brandOf(number) {
    if (/^4/.test(number)) { return "Visa"; }
    if (/^(5[1-5]|2(2[2-9]|[3-6][0-9]|7[01]|720))/.test(number)) { return "Mastercard"; }
    if (/^3[47]/.test(number)) { return "American Express"; }
    if (/^(50|5[6-9]|6[0-9])/.test(number) && !/^(6011|65|64[4-9])/.test(number)) {
      return "Maestro";
    }
    if (/^(6011|65|64[4-9])/.test(number)) { return "Discover"; }
    if (/^3(0[0-5]|[689])/.test(number)) { return "Diners Club"; }
    return "";
  }

  function luhn(number) {
    var sum = 0;
    for (var i = 0; i < number.length; i++) {
      var d = number.charCodeAt(number.length - 1 - i) - 48;
      if (i % 2 === 1) { d *= 2; if (d > 9) { d -= 9; } }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function groups(number, brand) {
    if (brand === "American Express") {
      return [number.slice(0, 4), number.slice(4, 10), number.slice(10, 15)]
        .filter(Boolean).join(" ");
    }
    return number.replace(/(.{4})/g, "$1 ").trim();
  }

  function parseExpiry(value) {
    var m = /^\s*(\d{1,2})\s*\/\s*(\d{2}|\d{4})\s*$/.exec(value);
    if (!m) { return null; }
    var month = parseInt(m[1], 10);
    var year = m[2].length === 2 ? 2000 + parseInt(m[2], 10) : parseInt(m[2], 10);
    if (month < 1 || month > 12) { return null; }
    return { month: month, year: year };
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function checkName() {
    var v = fields.name.value.trim();
    if (v.length > 100) { return "The name on the card is at most 100 characters."; }
    if (/\d{6,}/.test(v)) { return "Type the name on the card here, not its number."; }
    return "";
  }

  function checkNumber() {
    var n = digits(fields.number.value);
    if (n === "") { return "Enter the card number."; }
    if (!/^\d+$/.test(n)) { return "The card number has digits only."; }
    if (n.length < 12 || n.length > 19 || !luhn(n)) {
      return "This card number is not valid: check it against your card.";
    }
    return "";
  }

  function checkExpiry() {
    var v = fields.expiry.value;
    if (v.trim() === "") { return "Enter the expiry date as MM/YY."; }
    var e = parseExpiry(v);
    if (e === null) { return "Enter the expiry date as MM/YY, for example 04/29."; }
    if (e.year > new Date().getFullYear() + 20) { return "This expiry date is too far ahead."; }
    return "";
  }

  function checkCvv() {
    var v = fields.cvv.value.trim();
    var amex = brandOf(digits(fields.number.value)) === "American Express";
    var want = amex ? 4 : 3;
    if (!new RegExp("^\\d{" + want + "}$").test(v)) {
      return "Enter the " + want + "-digit security code from your card.";
    }
    return "";
  }

  function checkConsent() {
    return fields.consent.checked ? "" :
      "Tick the box to agree that the card may be kept and charged under these terms.";
  }

  var checks = {
    name: checkName, number: checkNumber, expiry: checkExpiry, cvv: checkCvv, consent: checkConsent
  };

  function showFieldError(key, message) {
    var el = fields[key];
    var err = document.getElementById(key + "-error");
    err.textContent = message;
    if (message) { el.setAttribute("aria-invalid", "true"); }
    else { el.removeAttribute("aria-invalid"); }
  }

  // --- as the customer types --------------------------------------------------------------

  fields.number.addEventListener("input", function () {
    var n = digits(fields.number.value).replace(/\D/g, "").slice(0, 19);
    var brand = brandOf(n);
    brandEl.textContent = brand;
    var shown = groups(n, brand);
    if (shown !== fields.number.value) { fields.number.value = shown; }
  });

  // MM/YY as it is typed: the slash is added after the month, a typed slash is not doubled, and
  // a one-digit month followed by a slash becomes 0M/.
  fields.expiry.addEventListener("input", function (event) {
    if (event.inputType && event.inputType.indexOf("delete") === 0) { return; }
    var v = fields.expiry.value;
    var oneDigitMonth = /^\s*(\d)\s*\/(.*)$/.exec(v);
    if (oneDigitMonth) { v = "0" + oneDigitMonth[1] + "/" + oneDigitMonth[2]; }
    var d = v.replace(/\D/g, "").slice(0, 6);
    var shown = d.length >= 2 ? d.slice(0, 2) + "/" + d.slice(2) : d;
    if (shown !== fields.expiry.value) { fields.expiry.value = shown; }
  });

  Object.keys(fields).forEach(function (key) {
    var eventName = key === "consent" ? "change" : "blur";
    fields[key].addEventListener(eventName, function () {
      if (fields[key].getAttribute("aria-invalid") === "true" || key === "consent") {
        showFieldError(key, checks[key]());
      }
    });
  });

  // --- submitting -------------------------------------------------------------------------

  function finish(message) {
    form.hidden = true;
    result.textContent = message;
  }

  function linkProblem(message) {
    formError.textContent = message;
    form.querySelectorAll("input, button").forEach(function (el) { el.disabled = true; });
  }

  function record(status, outcome) {
    document.body.setAttribute("data-outcome", outcome);
    document.body.setAttribute("data-status", status);
    tellParent(status, outcome);
  }

  function answered(body) {
    var status = body.status;
    var details = body.paymentDetails || {};
    if (status === "Authorized") {
      record(status, "authorized");
      if (!redirectAfter(status)) { finish("Card saved. You can close this page."); }
    } else if (status === "CardExpired") {
      record(status, "card_expired");
      formError.textContent = "This card has expired. Ask the merchant for a new link to use another card.";
      if (!redirectAfter(status)) { form.hidden = true; }
    } else {
      record(status, "declined");
      formError.textContent = "Your card was declined" +
        (details.message ? " (" + details.message + ")" : "") +
        ". Check the details or try another card.";
      submit.disabled = false;
      fields.number.focus();
    }
  }

  function refused(status, body) {
    var code = body && body.code;
    if (status === 401 || status === 409) {
      var why = code === "client_session_secret_expired" ? "This card link has expired."
        : code === "client_session_secret_used" ? "This card link has already been used."
        : status === 409 ? "This card request no longer accepts a card."
        : "This card link is not valid.";
      linkProblem(why + " Ask the merchant for a new link.");
      return;
    }
    if (status === 400 && body && body.errors) {
      formError.textContent = "Check the card details: " +
        Object.keys(body.errors).map(function (k) { return body.errors[k].join(" "); }).join(" ");
    } else if (status === 429 || status >= 500) {
      formError.textContent = "The card could not be checked just now. Please try again in a moment.";
    } else {
      formError.textContent = (body && body.detail) || "The card could not be saved.";
    }
    submit.disabled = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    formError.textContent = "";
    var first = null;
    Object.keys(checks).forEach(function (key) {
      var message = checks[key]();
      showFieldError(key, message);
      if (message && first === null) { first = key; }
    });
    if (first !== null) {
      formError.textContent = "Please correct the highlighted details.";
      fields[first].focus();
      return;
    }
    var expiry = parseExpiry(fields.expiry.value);
    var card = {
      cardNumber: digits(fields.number.value),
      expiryDate: pad(expiry.month) + "/" + String(expiry.year % 100).padStart(2, "0"),
      cv2: fields.cvv.value.trim()
    };
    var name = fields.name.value.trim();
    if (name) { card.cardName = name; }
    submit.disabled = true;
    result.textContent = "Checking your card…";
    fetch("/setup-intents/public/" + encodeURIComponent(setupIntentId) + "/card", {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: {
        "Authorization": "Basic " + secret,
        "Content-Type": "application/json",
        "version": VERSION
      },
      body: JSON.stringify({ cardDetails: card, mitConsentGiven: true })
    }).then(function (response) {
      fields.cvv.value = "";
      result.textContent = "";
      return response.json().catch(function () { return null; }).then(function (body) {
        if (response.ok && body) { answered(body); } else { refused(response.status, body); }
      });
    }, function () {
      result.textContent = "";
      formError.textContent = "The card could not be sent. Check your connection and try again.";
      submit.disabled = false;
    });
  });
})();
