// One book's page: its live availability, and add to cart.
import {
  $,
  addToCartFrom,
  api,
  cartChanged,
  currentCart,
  initPage,
  live,
  money,
  onCartChange,
  say,
  showAlert,
  stockText,
} from "./common.js";

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

function addToCart() {
  if (!state.book) return; // not loaded (the button stays disabled until it is)
  return addToCartFrom({
    user,
    book: state.book,
    input: $("#qty"),
    button: $("#add-button"),
    note: $("#note"),
    onCart: applyCart,
    onSoldOut: render,
  });
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
