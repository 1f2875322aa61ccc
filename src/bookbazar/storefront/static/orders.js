// The buyer's orders, newest first, a page at a time, each with its books and a link to
// its live page.
import { $, api, formatDateTime, goToLogin, h, initPage, live, money, shortId, showAlert, statusLabel } from "./common.js";

const PAGE_SIZE = 10;
const user = await initPage();
if (!user) goToLogin();
const state = { page: Math.max(1, Number.parseInt(new URLSearchParams(location.search).get("page") || "1", 10) || 1) };

function books(order) {
  const titles = order.items.map((item) => (item.quantity > 1 ? `${item.title} × ${item.quantity}` : item.title));
  return titles.join(", ");
}

async function load() {
  const result = await api("GET", `/orders?page=${state.page}&pageSize=${PAGE_SIZE}`);
  if (result.status === 401) return goToLogin();
  const view = $("#orders-view");
  view.setAttribute("aria-busy", "false");
  if (!result.ok) return showAlert(`Could not load your orders: ${result.message}`);
  const { items: orders, total } = result.data;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  $("#orders-pager").hidden = pages <= 1;
  $("#orders-page-label").textContent = `Page ${state.page} of ${pages}`;
  $("#orders-prev").disabled = state.page <= 1;
  $("#orders-next").disabled = state.page >= pages;
  if (!orders.length) {
    const text = total ? "No orders on this page. " : "No orders yet. ";
    view.replaceChildren(h("p", { class: "empty" }, text, h("a", { href: "/" }, "Browse the books"), "."));
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
          h("span", { class: "order-books" }, books(order)),
        ),
      ),
    ),
  );
}

function go(page) {
  state.page = page;
  history.replaceState(null, "", page > 1 ? `/orders?page=${page}` : "/orders");
  load();
}

$("#orders-prev").addEventListener("click", () => go(Math.max(1, state.page - 1)));
$("#orders-next").addEventListener("click", () => go(state.page + 1));
live.on("order.*", () => load());
live.onConnected(({ reconnect }) => {
  if (reconnect) load();
});
if (user) {
  await load();
  document.body.dataset.ready = "true";
}
