// Checkout: place the order once (one Idempotency-Key per attempt, reused on a repeated
// click or a retry after a network error), show the reservation countdown, then pay.
import {
  $,
  api,
  cartChanged,
  clearAlert,
  countdown,
  currentCart,
  goToLogin,
  h,
  initPage,
  live,
  money,
  newIdempotencyKey,
  say,
  setCartCount,
  shortId,
  showAlert,
} from "./common.js";

const ATTEMPT_KEY = "bb.checkout.attempt";
const state = { cart: null, order: null, placing: false, paying: false, stopTimer: null };

const user = await initPage();
if (!user) goToLogin();

function readAttempt() {
  try {
    return JSON.parse(sessionStorage.getItem(ATTEMPT_KEY) || "null");
  } catch {
    return null;
  }
}

function saveAttempt(attempt) {
  try {
    if (attempt) sessionStorage.setItem(ATTEMPT_KEY, JSON.stringify(attempt));
    else sessionStorage.removeItem(ATTEMPT_KEY);
  } catch {
    /* the in-memory attempt still protects against double clicks on this page */
  }
}

let memoryAttempt = null;

/** The key for this attempt: the same while the buyer retries the same order (same
 * address, unfinished attempt), a new one once an attempt got its final answer. */
function attemptKey(fingerprint) {
  const stored = memoryAttempt || readAttempt();
  if (stored && stored.fingerprint === fingerprint) return stored.key;
  memoryAttempt = { key: newIdempotencyKey(), fingerprint };
  saveAttempt(memoryAttempt);
  return memoryAttempt.key;
}

function finishAttempt() {
  memoryAttempt = null;
  saveAttempt(null);
}

function renderSummary() {
  const cart = state.cart;
  const box = $("#checkout-summary");
  if (!cart.items.length) {
    box.replaceChildren(
      h("p", { class: "empty" }, "Your cart is empty. ", h("a", { href: "/" }, "Browse the books"), "."),
    );
    $("#checkout-form").hidden = true;
    return;
  }
  box.replaceChildren(
    h(
      "ul",
      { class: "summary-lines" },
      cart.items.map((item) =>
        h(
          "li",
          {},
          h("span", {}, `${item.title} × ${item.quantity}`),
          h("span", {}, money(item.lineTotal, cart.currency)),
        ),
      ),
    ),
    h("p", { class: "cart-total" }, "Total: ", h("strong", {}, money(cart.total, cart.currency))),
  );
  $("#checkout-form").hidden = false;
}

async function loadCart({ fresh = false } = {}) {
  let cart = fresh ? null : currentCart();
  if (!cart) {
    const result = await api("GET", "/cart");
    if (result.status === 401) return goToLogin();
    if (!result.ok) return showAlert(`Could not load your cart: ${result.message}`);
    cart = result.data;
    cartChanged(cart);
  }
  state.cart = cart;
  renderSummary();
  if (!cart.items.length) await showOpenOrder();
}

/** With an empty cart, point at an order still awaiting payment (e.g. after a reload). */
async function showOpenOrder() {
  const result = await api("GET", "/orders?pageSize=10");
  if (!result.ok) return;
  const open = result.data.items.find((o) => o.status === "PAYMENT_PENDING");
  if (open) {
    $("#checkout-summary").append(
      h(
        "p",
        { class: "notice" },
        "You have an order awaiting payment: ",
        h("a", { href: `/orders/${open.orderId}` }, `order ${shortId(open.orderId)}`),
        ".",
      ),
    );
  }
}

function shortfallText(errors) {
  return errors
    .map((e) =>
      e.available > 0
        ? `only ${e.available} of “${e.title}” left (you asked for ${e.requested})`
        : `“${e.title}” is sold out`,
    )
    .join("; ");
}

function setPlacing(on) {
  state.placing = on;
  const button = $("#place-order");
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
  button.textContent = on ? "Placing your order…" : "Place order";
}

async function placeOrder(event) {
  event.preventDefault();
  // A second click while the first is on its way does nothing (and would reuse the key).
  if (state.placing || state.order) return;
  const form = $("#checkout-form");
  for (const input of form.querySelectorAll("input[required]")) {
    if (!input.value.trim()) {
      const label = $(`label[for="${input.id}"]`).textContent;
      input.setAttribute("aria-invalid", "true");
      showAlert(`Please fill in: ${label}.`, "warning");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
  }
  const body = {
    shippingAddress: {
      name: $("#ship-name").value.trim(),
      line1: $("#ship-line1").value.trim(),
      city: $("#ship-city").value.trim(),
      postalCode: $("#ship-postal").value.trim(),
      country: $("#ship-country").value,
    },
  };
  const key = attemptKey(JSON.stringify(body));
  setPlacing(true);
  clearAlert();
  const result = await api("POST", "/orders", { body, headers: { "Idempotency-Key": key } });
  if (result.status === 401) return goToLogin();
  if (result.status === 201) {
    finishAttempt();
    setPlacing(false);
    showReserved(result.data);
    return;
  }
  setPlacing(false);
  if (result.status === 409 && result.errors.length) {
    // Final answer for this attempt: nothing was reserved. The next try is a new attempt.
    finishAttempt();
    showAlert(
      `Sold out: ${shortfallText(result.errors)}. Nothing was reserved — update your cart and try again.`,
      "warning",
    );
    const cartLink = h("a", { href: "/cart" }, "Update your cart");
    $("#checkout-summary").append(h("p", { class: "notice" }, cartLink));
    return;
  }
  if (result.status === 409 || result.status === 0 || result.status >= 500) {
    // Still in flight, or the answer was lost: the same key is kept, so pressing again
    // returns the same order instead of placing a second one.
    const why = result.status === 0 ? "We could not confirm your order." : result.message;
    showAlert(`${why} Press “Place order” again: it is safe, it will not place a second order.`);
    return;
  }
  finishAttempt();
  if (result.status === 400) {
    showAlert(result.message, "warning");
    await loadCart({ fresh: true });
    return;
  }
  showAlert(result.message);
}

function showReserved(order) {
  state.order = order;
  setCartCount([]);
  $("#checkout-step").hidden = true;
  const panel = $("#reserved-step");
  panel.hidden = false;
  panel.dataset.orderId = order.orderId;
  $("#reserved-order-id").textContent = shortId(order.orderId);
  $("#reserved-order-link").href = `/orders/${order.orderId}`;
  $("#reserved-total").textContent = money(order.total, order.currency);
  panel.focus();
  say(`Order placed. Your books are reserved; pay before the timer runs out.`);
  if (order.expiresAt) {
    state.stopTimer = countdown($("#reservation-countdown"), order.expiresAt, reservationExpired);
  }
}

function reservationExpired() {
  if (state.stopTimer) state.stopTimer();
  $("#pay-now").disabled = true;
  showAlert(
    "Reservation expired: the books went back on sale. Add them to your cart again to order.",
    "warning",
  );
}

$("#pay-now").addEventListener("click", async () => {
  if (!state.order || state.paying) return;
  state.paying = true;
  const button = $("#pay-now");
  button.disabled = true;
  button.textContent = "Opening the payment page…";
  clearAlert();
  const result = await api("POST", "/payments/init", { body: { orderId: state.order.orderId } });
  if (result.ok && result.data && result.data.redirectUrl) {
    location.assign(result.data.redirectUrl);
    return;
  }
  state.paying = false;
  button.textContent = "Pay now";
  button.disabled = false;
  if (result.status === 404 && !result.data) {
    showAlert("Payments are not available right now. Your books stay reserved; try again shortly.");
  } else {
    showAlert(result.message);
  }
});

live.on("order.*", (event, type) => {
  if (!state.order || event.orderId !== state.order.orderId) return;
  if (type === "order.expired") reservationExpired();
  if (type === "order.cancelled") {
    if (state.stopTimer) state.stopTimer();
    $("#pay-now").disabled = true;
    showAlert("This order was cancelled and its books released.", "warning");
  }
  if (type === "order.payment_failed") {
    showAlert("Payment declined. Your books stay reserved; you can try again.", "warning");
  }
  if (type === "order.paid") location.assign(`/orders/${state.order.orderId}`);
});

$("#checkout-form").addEventListener("submit", placeOrder);
if (user) {
  $("#ship-name").value = user.name || "";
  await loadCart();
  document.body.dataset.ready = "true";
}
