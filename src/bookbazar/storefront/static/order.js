// One order: a live status timeline fed by order events, caught up after a reconnect
// (the live connection emits `resume`; this page re-reads the order as well).
import {
  $,
  api,
  clearAlert,
  countdown,
  formatDateTime,
  formatTime,
  goToLogin,
  h,
  initPage,
  live,
  money,
  say,
  shortId,
  showAlert,
  statusLabel,
} from "./common.js";

const orderId = location.pathname.split("/").filter(Boolean).pop();
const STEPS = [
  { status: "PAYMENT_PENDING", label: "Placed" },
  { status: "PAID", label: "Paid" },
  { status: "FULFILLING", label: "Being prepared" },
  { status: "SHIPPED", label: "Shipped" },
  { status: "DELIVERED", label: "Delivered" },
];
// How far along each status is; an event never moves the page backwards.
const RANK = {
  PENDING: 0,
  PAYMENT_PENDING: 1,
  EXPIRED: 1.5,
  CANCELLED: 1.5,
  FAILED: 1.5,
  PAID: 2,
  FULFILLING: 3,
  SHIPPED: 4,
  DELIVERED: 5,
  REFUND_PENDING: 3,
  REFUNDED: 4,
};
const OUTCOMES = {
  EXPIRED:
    "Reservation expired: the order was not paid in time and its books went back on sale. Add them to your cart again to order.",
  CANCELLED: "This order was cancelled and its books released.",
  FAILED: "This order could not be placed. Nothing was charged.",
  REFUND_PENDING: "Your payment arrived after the books were released, so it is being refunded.",
  REFUNDED: "Your payment was refunded.",
};
const EVENT_TEXT = {
  "order.created": "Order placed; books reserved",
  "order.paid": "Payment received",
  "order.payment_failed": "Payment declined",
  "order.expired": "Reservation expired",
  "order.cancelled": "Order cancelled",
  "order.fulfilling": "Being prepared",
  "order.shipped": "Shipped",
  "order.delivered": "Delivered",
  "order.refunded": "Refunded",
};

const state = { order: null, stopTimer: null, paying: false, declined: false };

const user = await initPage();
if (!user) goToLogin();
$("#order-short-id").textContent = shortId(orderId);

function renderTimeline(status) {
  const rank = RANK[status] ?? 0;
  const offPath = ["EXPIRED", "CANCELLED", "FAILED", "REFUND_PENDING", "REFUNDED"].includes(status);
  const items = STEPS.map((step) => {
    const stepRank = RANK[step.status];
    let kind;
    if (offPath) kind = step.status === "PAYMENT_PENDING" ? "done" : "skipped";
    else if (stepRank < rank || (stepRank === rank && status === "DELIVERED")) kind = "done";
    else if (stepRank === rank) kind = "current";
    else kind = "todo";
    const suffix = { done: "done", current: "current step", todo: "not yet", skipped: "skipped" }[kind];
    return h(
      "li",
      {
        class: `step ${kind}`,
        dataset: { step: step.status },
        "aria-current": kind === "current" ? "step" : null,
      },
      h("span", { class: "step-dot", "aria-hidden": "true" }),
      h("span", { class: "step-label" }, step.label),
      h("span", { class: "visually-hidden" }, ` (${suffix})`),
    );
  });
  if (offPath) {
    items.push(
      h(
        "li",
        { class: "step current off-path", "aria-current": "step", dataset: { step: status } },
        h("span", { class: "step-dot", "aria-hidden": "true" }),
        h("span", { class: "step-label" }, statusLabel(status)),
      ),
    );
  }
  $("#timeline").replaceChildren(...items);
}

function renderStatus() {
  const order = state.order;
  const status = order.status;
  const badge = $("#order-status");
  badge.textContent = statusLabel(status);
  badge.dataset.status = status;
  document.body.dataset.orderStatus = status;
  renderTimeline(status);
  const outcome = $("#order-outcome");
  let text = OUTCOMES[status] || "";
  if (status === "PAYMENT_PENDING" && state.declined) {
    const until = order.expiresAt ? ` until ${formatTime(order.expiresAt)}` : "";
    text = `Payment declined. Your books stay reserved${until}; you can try paying again.`;
  }
  outcome.textContent = text;
  outcome.hidden = !text;
  outcome.dataset.kind = status === "PAYMENT_PENDING" || status === "EXPIRED" ? "warning" : "info";
  const pending = status === "PAYMENT_PENDING";
  $("#pending-actions").hidden = !pending;
  if (state.stopTimer) {
    state.stopTimer();
    state.stopTimer = null;
  }
  if (pending && order.expiresAt) {
    state.stopTimer = countdown($("#order-countdown"), order.expiresAt, () => {
      $("#order-pay").disabled = true;
      showAlert(
        "Reservation expired: the books went back on sale. Add them to your cart again to order.",
        "warning",
      );
    });
  }
}

function renderItems() {
  const order = state.order;
  $("#order-items").replaceChildren(
    h(
      "ul",
      { class: "summary-lines" },
      order.items.map((item) =>
        h(
          "li",
          {},
          h("span", {}, `${item.title} × ${item.quantity}`),
          h("span", {}, money(item.lineTotal, order.currency)),
        ),
      ),
    ),
    h("p", { class: "cart-total" }, "Total: ", h("strong", {}, money(order.total, order.currency))),
    h("p", { class: "muted" }, `Placed ${formatDateTime(order.createdAt)}`),
  );
}

async function load() {
  const result = await api("GET", `/orders/${encodeURIComponent(orderId)}`);
  if (result.status === 401) return goToLogin();
  const view = $("#order-view");
  view.setAttribute("aria-busy", "false");
  if (result.status === 404 || result.status === 422) {
    view.replaceChildren(
      h("p", { class: "notice" }, "We could not find this order. ", h("a", { href: "/orders" }, "See your orders"), "."),
    );
    return;
  }
  if (!result.ok) {
    showAlert(`Could not load the order: ${result.message}`);
    return;
  }
  const fresh = result.data;
  // An event that arrived while this read was in flight may be newer than the read.
  if (state.order && (RANK[fresh.status] ?? 0) < (RANK[state.order.status] ?? 0)) {
    fresh.status = state.order.status;
  }
  state.order = fresh;
  if (fresh.payment && fresh.payment.status === "failed" && fresh.status === "PAYMENT_PENDING") {
    state.declined = true;
  }
  view.replaceChildren();
  for (const id of ["#status-panel", "#items-panel", "#events-panel"]) $(id).hidden = false;
  renderStatus();
  renderItems();
}

function logEvent(event, type) {
  $("#no-events").hidden = true;
  const tracking = event.data && (event.data.trackingNumber || event.data.tracking_number);
  const text = `${EVENT_TEXT[type] || type}${tracking ? ` — tracking ${tracking}` : ""}`;
  $("#order-events").append(
    h(
      "li",
      { dataset: { type, eventId: event.id || "" } },
      h("time", { datetime: event.occurredAt || "" }, formatTime(event.occurredAt || Date.now())),
      " ",
      text,
    ),
  );
}

live.on("order.*", (event, type) => {
  if (event.orderId !== orderId) return;
  logEvent(event, type);
  if (!state.order) return;
  if (type === "order.payment_failed") {
    state.declined = true;
    state.paying = false;
    $("#order-pay").disabled = false;
    renderStatus();
    say("Payment declined. Your books stay reserved; you can try paying again.");
    return;
  }
  if (event.status && (RANK[event.status] ?? 0) >= (RANK[state.order.status] ?? 0)) {
    state.order.status = event.status;
    if (event.status !== "PAYMENT_PENDING") state.declined = false;
    renderStatus();
    say(`Order ${shortId(orderId)}: ${OUTCOMES[event.status] || `${statusLabel(event.status)}.`}`);
  }
});

live.onConnected(({ reconnect }) => {
  // Events may have been missed while disconnected: `resume` re-sends them, and the order
  // is re-read so the page is right even if the server no longer retains them.
  if (reconnect) load();
});

$("#order-pay").addEventListener("click", async () => {
  if (state.paying) return;
  state.paying = true;
  const button = $("#order-pay");
  button.disabled = true;
  clearAlert();
  const result = await api("POST", "/payments/init", { body: { orderId } });
  if (result.ok && result.data && result.data.redirectUrl) {
    location.assign(result.data.redirectUrl);
    return;
  }
  state.paying = false;
  button.disabled = false;
  showAlert(
    result.status === 404 && !result.data
      ? "Payments are not available right now. Your books stay reserved; try again shortly."
      : result.message,
  );
});

$("#order-cancel").addEventListener("click", async () => {
  if (!window.confirm("Cancel this order? Its books go back on the shelf.")) return;
  const button = $("#order-cancel");
  button.disabled = true;
  const result = await api("POST", `/orders/${encodeURIComponent(orderId)}/cancel`);
  button.disabled = false;
  if (result.ok) {
    state.order = result.data;
    renderStatus();
    say("Order cancelled; its books were released.");
  } else {
    showAlert(result.message);
  }
});

if (user) {
  await load();
  document.body.dataset.ready = "true";
}
