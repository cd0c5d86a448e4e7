// The billing portal's only script: the card top-up (Stripe.js) and, where shown, the
// auto-recharge form. Everything else on the page is rendered by the server.
(function () {
  "use strict";
  const root = document.getElementById("portal");
  if (!root) return;
  const api = root.dataset.api;
  const POLL_MS = 1000;
  const POLL_LIMIT = 120; // two minutes, then the page says to check back later

  async function call(method, path, body) {
    const response = await fetch(api + path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.detail || data.title || "request failed (" + response.status + ")");
    }
    return data;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    return Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }

  async function refreshBalances() {
    const balances = await call("GET", "/wallet");
    for (const b of balances) {
      const row = document.querySelector('tr.balance[data-asset="' + b.asset + '"]');
      if (!row) continue;
      const cell = row.querySelector(".available");
      cell.textContent = b.available_display;
      cell.dataset.minor = String(b.available);
    }
    return balances;
  }

  // --- top-up ------------------------------------------------------------------------------
  const form = document.getElementById("topup-form");
  if (form && typeof Stripe === "function") {
    const stripe = Stripe(root.dataset.stripeKey);
    const card = stripe.elements().create("card");
    card.mount("#card-element");
    const button = document.getElementById("topup-button");
    const status = document.getElementById("topup-status");
    let attemptKey = null; // one key per attempt: a double click or a retry starts nothing new

    function say(text, state) {
      status.textContent = text;
      status.dataset.state = state;
    }

    async function poll(topUpId) {
      for (let i = 0; i < POLL_LIMIT; i++) {
        const topUp = await call("GET", "/top-ups/" + topUpId);
        if (topUp.final) return topUp;
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      return null;
    }

    form.addEventListener("input", (event) => {
      if (event.target.id === "topup-amount" || event.target.id === "topup-asset") attemptKey = null;
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      attemptKey = attemptKey || newKey();
      try {
        say("Starting the payment…", "starting");
        const topUp = await call("POST", "/top-ups", {
          idempotency_key: attemptKey,
          asset: document.getElementById("topup-asset").value,
          amount: document.getElementById("topup-amount").value.trim(),
        });
        if (!topUp.final) {
          say("Confirming the card…", "confirming");
          const result = await stripe.confirmCardPayment(topUp.client_secret, { payment_method: { card } });
          if (result.error) {
            attemptKey = null; // the PaymentIntent failed: the next attempt is a new top-up
            throw new Error(result.error.message || "the card was declined");
          }
          say("Payment received, crediting your wallet…", "crediting");
        }
        const done = topUp.final ? topUp : await poll(topUp.id);
        attemptKey = null;
        if (done === null) {
          say("The payment is still being processed; check back in a minute.", "pending");
        } else if (done.status === "succeeded") {
          await refreshBalances();
          say("Done: your wallet was credited.", "succeeded");
        } else if (done.status === "in_review") {
          say("The payment is being reviewed; your wallet is credited once it is approved.", "in_review");
        } else {
          say("The top-up did not go through (" + done.status + ").", "failed");
        }
      } catch (error) {
        say(error.message, "error");
      } finally {
        button.disabled = false;
      }
    });
  }

  // --- auto-recharge -----------------------------------------------------------------------
  for (const recharge of document.querySelectorAll("form.recharge-form")) {
    const note = recharge.querySelector(".recharge-status");
    recharge.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = Object.fromEntries(new FormData(recharge).entries());
      fields.enabled = recharge.querySelector('[name="enabled"]').checked;
      fields.consent = recharge.querySelector('[name="consent"]').checked;
      try {
        note.textContent = "Saving…";
        note.dataset.state = "saving";
        const saved = await call("PUT", "/auto-recharge", fields);
        recharge.querySelector(".recharge-state strong").textContent = saved.enabled ? "on" : "off";
        note.textContent = saved.enabled ? "Saved: auto-recharge is on." : "Saved: auto-recharge is off.";
        note.dataset.state = "saved";
      } catch (error) {
        note.textContent = error.message;
        note.dataset.state = "error";
      }
    });
  }
})();
