// The buyer's orders, newest first, each linking to its live page.
import { $, api, formatDateTime, goToLogin, h, initPage, live, money, shortId, showAlert, statusLabel } from "./common.js";

const user = await initPage();
if (!user) goToLogin();

async function load() {
  const result = await api("GET", "/orders?pageSize=50");
  if (result.status === 401) return goToLogin();
  const view = $("#orders-view");
  view.setAttribute("aria-busy", "false");
  if (!result.ok) return showAlert(`Could not load your orders: ${result.message}`);
  const orders = result.data.items;
  if (!orders.length) {
    view.replaceChildren(h("p", { class: "empty" }, "No orders yet. ", h("a", { href: "/" }, "Browse the books"), "."));
    return;
  }
  view.replaceChildren(
    h(
      "ul",
      { class: "order-list" },
      orders.map((order) =>
        h(
          "li",
          { class: "order-row", dataset: { orderId: order.orderId, status: order.status } },
          h("a", { href: `/orders/${order.orderId}` }, `Order ${shortId(order.orderId)}`),
          h("span", { class: `status-pill status-${order.status.toLowerCase()}` }, statusLabel(order.status)),
          h("span", {}, money(order.total, order.currency)),
          h("span", { class: "muted" }, formatDateTime(order.createdAt)),
        ),
      ),
    ),
  );
}

live.on("order.*", () => load());
live.onConnected(({ reconnect }) => {
  if (reconnect) load();
});
if (user) {
  await load();
  document.body.dataset.ready = "true";
}
