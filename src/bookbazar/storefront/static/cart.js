// The cart: quantity controls, remove, empty; kept in step with other tabs by cart:update.
import {
  $,
  api,
  clearAlert,
  goToLogin,
  h,
  initPage,
  live,
  money,
  say,
  cartChanged,
  currentCart,
  onCartChange,
  showAlert,
  srOnly,
} from "./common.js";

const MAX_LINE = 10;
const state = { cart: null, busy: new Set() };

const user = await initPage();
if (!user) goToLogin();

function lineRow(item, currency) {
  const qtyId = `cart-qty-${item.bookId}`;
  const busy = state.busy.has(item.bookId);
  const input = h("input", {
    id: qtyId,
    class: "qty-input",
    type: "number",
    inputmode: "numeric",
    min: 1,
    max: MAX_LINE,
    value: item.quantity,
    disabled: busy,
    onchange: () => {
      const wanted = Number(input.value);
      if (!Number.isInteger(wanted) || wanted < 1 || wanted > MAX_LINE) {
        showAlert(`Choose a whole number from 1 to ${MAX_LINE} for “${item.title}”.`, "warning");
        input.value = String(item.quantity);
        return;
      }
      setQuantity(item, wanted);
    },
  });
  return h(
    "li",
    { class: "cart-line", dataset: { bookId: item.bookId, quantity: String(item.quantity) } },
    h("div", { class: "line-title" }, h("strong", {}, item.title)),
    h("p", { class: "muted" }, `${money(item.price, currency)} each`),
    h(
      "div",
      { class: "stepper", role: "group", "aria-label": `Quantity of ${item.title}` },
      h(
        "button",
        {
          type: "button",
          class: "step-down",
          "aria-label": `One fewer “${item.title}”`,
          disabled: busy || item.quantity <= 1,
          onclick: () => setQuantity(item, item.quantity - 1),
        },
        "−",
      ),
      h("label", { for: qtyId, class: "visually-hidden" }, `Quantity of ${item.title}`),
      input,
      h(
        "button",
        {
          type: "button",
          class: "step-up",
          "aria-label": `One more “${item.title}”`,
          disabled: busy || item.quantity >= MAX_LINE,
          onclick: () => setQuantity(item, item.quantity + 1),
        },
        "+",
      ),
    ),
    h("p", { class: "line-total" }, money(item.lineTotal, currency)),
    h(
      "button",
      {
        type: "button",
        class: "remove link-button",
        disabled: busy,
        onclick: () => removeLine(item),
      },
      "Remove",
      srOnly(` “${item.title}”`),
    ),
  );
}

function render() {
  const view = $("#cart-view");
  view.setAttribute("aria-busy", "false");
  const cart = state.cart;
  cartChanged(cart);
  view.dataset.version = String(cart.version);
  $("#cart-actions").hidden = cart.items.length === 0;
  if (cart.items.length === 0) {
    view.replaceChildren(
      h("p", { class: "empty" }, "Your cart is empty. ", h("a", { href: "/" }, "Browse the books"), "."),
    );
    return;
  }
  // Keep keyboard focus on the same control across a re-render.
  const focused = document.activeElement;
  const focusKey =
    focused && focused.closest && focused.closest(".cart-line")
      ? [focused.closest(".cart-line").dataset.bookId, focused.className]
      : null;
  view.replaceChildren(
    h("ul", { class: "cart-lines", "aria-label": "Items in your cart" }, cart.items.map((i) => lineRow(i, cart.currency))),
    h("p", { class: "cart-total" }, "Total: ", h("strong", { id: "cart-total" }, money(cart.total, cart.currency))),
  );
  if (focusKey) {
    const line = view.querySelector(`.cart-line[data-book-id="${CSS.escape(focusKey[0])}"]`);
    const again = line && focusKey[1] && line.getElementsByClassName(focusKey[1].split(" ")[0])[0];
    if (again && !again.disabled) again.focus();
  }
}

function show(cart, { announce = false } = {}) {
  const changed = state.cart && cart.version !== state.cart.version;
  state.cart = cart;
  render();
  if (announce && changed) say("Your cart was updated in another tab.");
}

async function load({ announce = false } = {}) {
  const result = await api("GET", "/cart");
  if (result.status === 401) return goToLogin();
  if (!result.ok) return showAlert(`Could not load your cart: ${result.message}`);
  show(result.data, { announce });
}

async function change(item, request) {
  state.busy.add(item.bookId);
  render();
  clearAlert();
  const result = await request();
  state.busy.delete(item.bookId);
  if (result.status === 401) return goToLogin();
  if (result.ok) {
    // Responses carry the whole cart; an older one than we hold is ignored.
    if (!state.cart || result.data.version >= state.cart.version) state.cart = result.data;
    render();
    return result;
  }
  render();
  if (result.status === 409) {
    showAlert(`Sold out: “${item.title}” has no more copies available.`, "warning");
  } else {
    showAlert(result.message);
  }
  return result;
}

async function setQuantity(item, quantity) {
  const result = await change(item, () =>
    api("POST", "/cart/add", { body: { bookId: item.bookId, quantity } }),
  );
  if (!result.ok) return;
  if (result.data.adjusted) {
    const { available, quantity: got, requested } = result.data.adjusted;
    showAlert(
      `Quantity adjusted: only ${available} of “${item.title}” available, so your cart has ${got} instead of ${requested}.`,
      "warning",
    );
  } else {
    say(`“${item.title}”: quantity ${quantity}.`);
  }
}

async function removeLine(item) {
  const result = await change(item, () => api("POST", "/cart/remove", { body: { bookId: item.bookId } }));
  if (result.ok) say(`Removed “${item.title}”.`);
}

$("#clear-cart").addEventListener("click", async () => {
  if (!window.confirm("Remove every book from your cart?")) return;
  const result = await api("DELETE", "/cart");
  if (result.ok) {
    state.cart = result.data;
    render();
    say("Your cart is now empty.");
  } else {
    showAlert(result.message);
  }
});

// Another tab's change: the header read the cart once; show that read.
onCartChange((cart) => show(cart, { announce: true }));
live.onConnected(({ reconnect }) => {
  if (reconnect) load({ announce: true });
});

if (user) {
  if (currentCart()) show(currentCart());
  else await load();
  document.body.dataset.ready = "true";
}
