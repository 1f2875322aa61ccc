// One book's page: its live availability, and add to cart.
import {
  $,
  api,
  cartChanged,
  clearAlert,
  currentCart,
  goToLogin,
  initPage,
  live,
  money,
  onCartChange,
  say,
  showAlert,
  stockText,
} from "./common.js";

const MAX_LINE = 10;
const bookId = $("#book").dataset.bookId;
const state = { book: null, inCart: 0 };

const user = await initPage();
$("#live-note").hidden = Boolean(user);

function render() {
  const { book } = state;
  $("#book-price").textContent = money(book.price, book.currency);
  const stock = $("#book-stock");
  stock.textContent = stockText(book.available);
  stock.dataset.available = String(book.available);
  stock.classList.toggle("sold-out", book.available <= 0);
  $("#add-button").disabled = book.available <= 0;
  const qty = $("#qty");
  if (state.inCart && document.activeElement !== qty) qty.value = String(state.inCart);
  $("#in-cart").textContent = state.inCart ? `In your cart: ${state.inCart}` : "";
  $("#add-label").textContent = state.inCart ? "Update cart" : "Add to cart";
}

async function load() {
  const result = await api("GET", `/books/${encodeURIComponent(bookId)}`);
  if (!result.ok) {
    showAlert(`Could not load this book: ${result.message}`);
    return;
  }
  state.book = result.data;
  render();
  if (user) live.watchBooks([bookId]);
}

function applyCart(cart) {
  const line = cart.items.find((item) => item.bookId === bookId);
  state.inCart = line ? line.quantity : 0;
  cartChanged(cart);
  if (state.book) render();
}

async function addToCart() {
  if (!user) {
    goToLogin();
    return;
  }
  const { book } = state;
  const input = $("#qty");
  const note = $("#note");
  const quantity = Number(input.value);
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > MAX_LINE) {
    note.textContent = `Choose a whole number from 1 to ${MAX_LINE}.`;
    input.focus();
    return;
  }
  const button = $("#add-button");
  button.disabled = true;
  clearAlert();
  const result = await api("POST", "/cart/add", { body: { bookId, quantity } });
  button.disabled = book.available <= 0;
  if (result.status === 401) {
    goToLogin();
    return;
  }
  if (result.ok) {
    applyCart(result.data);
    if (result.data.adjusted) {
      const { available, quantity: got, requested } = result.data.adjusted;
      const text = `Quantity adjusted: only ${available} of “${book.title}” available, so your cart has ${got} instead of ${requested}.`;
      note.textContent = text;
      input.value = String(got);
      showAlert(text, "warning");
    } else {
      note.textContent = "";
      say(`“${book.title}”: ${quantity} in your cart.`);
    }
    return;
  }
  if (result.status === 409) {
    book.available = 0;
    render();
    const text = `Sold out: “${book.title}” has no copies left right now.`;
    note.textContent = text;
    showAlert(text, "warning");
    return;
  }
  note.textContent = result.message;
  showAlert(result.message);
}

live.on("stock:update", ({ bookId: changed, available }) => {
  const { book } = state;
  if (!book || changed !== bookId) return;
  const wasAvailable = book.available > 0;
  book.available = available;
  render();
  if (wasAvailable && available <= 0) say(`“${book.title}” just sold out.`);
  if (!wasAvailable && available > 0) say(`“${book.title}” is back in stock.`);
});
onCartChange(applyCart);
live.onConnected(({ reconnect }) => {
  if (reconnect) load(); // the stock may have moved while we were away
});
$("#add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  addToCart();
});

await load();
if (currentCart()) applyCart(currentCart());
document.body.dataset.ready = "true";
