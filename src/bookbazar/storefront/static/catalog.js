// The catalog: search, pages, each book's live availability, add to cart.
import {
  $,
  addToCartFrom,
  api,
  cartChanged,
  currentCart,
  h,
  initPage,
  live,
  MAX_LINE,
  money,
  onCartChange,
  say,
  showAlert,
  srOnly,
  stockText,
} from "./common.js";

const PAGE_SIZE = 12;
const SORTS = ["title", "price", "price_desc", "newest"];
const params = new URLSearchParams(location.search);
const state = {
  q: params.get("q") || "",
  sort: SORTS.includes(params.get("sort")) ? params.get("sort") : "title",
  subject: params.get("subject") || "",
  language: params.get("language") || "",
  page: Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1),
  total: 0,
  books: new Map(),
  inCart: new Map(),
};

const user = await initPage();
$("#search-q").value = state.q;
$("#search-sort").value = state.sort;

/** The filters' choices, with how many books each has; the chosen one kept even if the
 * catalog no longer has it (so the URL still shows what it asks for). */
async function loadFacets() {
  const result = await api("GET", "/books/facets");
  if (!result.ok) return;
  for (const [id, values, chosen] of [
    ["#filter-subject", result.data.subjects, state.subject],
    ["#filter-language", result.data.languages, state.language],
  ]) {
    const select = $(id);
    const names = values.map((f) => f.name);
    const options = values.map((f) => h("option", { value: f.name }, `${f.name} (${f.books})`));
    if (chosen && !names.includes(chosen)) options.push(h("option", { value: chosen }, chosen));
    select.replaceChildren(select.options[0], ...options);
    select.value = chosen;
  }
}
$("#live-note").hidden = Boolean(user);

function renderStock(card, book) {
  const stock = $(".stock", card);
  stock.textContent = stockText(book.available);
  stock.dataset.available = String(book.available);
  stock.classList.toggle("sold-out", book.available <= 0);
  const button = $(".add-button", card);
  button.disabled = book.available <= 0;
  const qty = $(".qty-input", card);
  const inCart = state.inCart.get(book.id) || 0;
  if (inCart && document.activeElement !== qty) qty.value = String(inCart);
  $(".in-cart", card).textContent = inCart ? `In your cart: ${inCart}` : "";
  $(".add-label", card).textContent = inCart ? "Update cart" : "Add to cart";
}

function bookCard(book) {
  const qtyId = `qty-${book.id}`;
  const titleId = `title-${book.id}`;
  const note = h("p", { class: "card-note", role: "status" });
  const card = h(
    "li",
    { class: "book-card", dataset: { bookId: book.id }, "aria-labelledby": titleId },
    h("img", {
      class: "cover",
      src: `/covers/${encodeURIComponent(book.id)}.svg`,
      alt: "",
      width: 100,
      height: 150,
      loading: "lazy",
    }),
    h(
      "h2",
      { class: "book-title", id: titleId },
      h("a", { href: `/books/${encodeURIComponent(book.id)}` }, book.title),
    ),
    h("p", { class: "author" }, `by ${book.author}`),
    h("p", { class: "price" }, money(book.price, book.currency)),
    h("p", { class: "stock", "aria-live": "polite" }),
    h(
      "form",
      {
        class: "add-form",
        novalidate: true,
        onsubmit: (event) => {
          event.preventDefault();
          addToCart(book.id, card, note);
        },
      },
      h("label", { for: qtyId }, "Quantity", srOnly(` of ${book.title}`)),
      h("input", {
        id: qtyId,
        class: "qty-input",
        type: "number",
        inputmode: "numeric",
        min: 1,
        max: MAX_LINE,
        value: state.inCart.get(book.id) || 1,
        required: true,
      }),
      h(
        "button",
        { type: "submit", class: "add-button primary" },
        h("span", { class: "add-label" }, "Add to cart"),
        srOnly(`: ${book.title}`),
      ),
    ),
    h("p", { class: "in-cart muted" }),
    note,
  );
  renderStock(card, book);
  return card;
}

async function load() {
  const query = new URLSearchParams({ page: String(state.page), pageSize: String(PAGE_SIZE) });
  if (state.q) query.set("q", state.q);
  if (state.sort !== "title") query.set("sort", state.sort);
  for (const name of ["subject", "language"]) if (state[name]) query.set(name, state[name]);
  const list = $("#books");
  list.setAttribute("aria-busy", "true");
  const result = await api("GET", `/books?${query}`);
  list.setAttribute("aria-busy", "false");
  if (!result.ok) {
    showAlert(`Could not load the books: ${result.message}`);
    return;
  }
  const { items, total } = result.data;
  state.total = total;
  state.books = new Map(items.map((b) => [b.id, b]));
  list.replaceChildren(...items.map(bookCard));
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const narrowed = state.q || state.subject || state.language;
  $("#result-summary").textContent = total
    ? `${total} book${total === 1 ? "" : "s"}${state.q ? ` matching “${state.q}”` : ""}.`
    : narrowed
      ? "No books match this search."
      : "No books yet.";
  $("#page-label").textContent = `Page ${state.page} of ${pages}`;
  $("#prev-page").disabled = state.page <= 1;
  $("#next-page").disabled = state.page >= pages;
  if (user) live.watchBooks([...state.books.keys()]);
}

function applyCart(cart) {
  state.inCart = new Map(cart.items.map((item) => [item.bookId, item.quantity]));
  cartChanged(cart);
  for (const card of document.querySelectorAll(".book-card")) {
    const book = state.books.get(card.dataset.bookId);
    if (book) renderStock(card, book);
  }
}

function addToCart(bookId, card, note) {
  const book = state.books.get(bookId);
  return addToCartFrom({
    user,
    book,
    input: $(".qty-input", card),
    button: $(".add-button", card),
    note,
    onCart: applyCart,
    onSoldOut: () => renderStock(card, book),
  });
}

live.on("stock:update", ({ bookId, available }) => {
  const book = state.books.get(bookId);
  if (!book) return;
  const wasAvailable = book.available > 0;
  book.available = available;
  const card = document.querySelector(`.book-card[data-book-id="${CSS.escape(bookId)}"]`);
  if (card) renderStock(card, book);
  if (wasAvailable && available <= 0) say(`“${book.title}” just sold out.`);
  if (!wasAvailable && available > 0) say(`“${book.title}” is back in stock.`);
});
onCartChange(applyCart);
live.onConnected(({ reconnect }) => {
  // Stock moved while we were away: re-read the visible books.
  if (reconnect) load();
});

function go(page) {
  state.page = page;
  const query = new URLSearchParams();
  if (state.q) query.set("q", state.q);
  if (state.sort !== "title") query.set("sort", state.sort);
  for (const name of ["subject", "language"]) if (state[name]) query.set(name, state[name]);
  if (page > 1) query.set("page", String(page));
  history.replaceState(null, "", query.toString() ? `/?${query}` : "/");
  load();
}

$("#search-sort").addEventListener("change", () => {
  state.sort = $("#search-sort").value;
  go(1);
});
for (const name of ["subject", "language"]) {
  $(`#filter-${name}`).addEventListener("change", (event) => {
    state[name] = event.target.value;
    go(1);
  });
}
$("#search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.q = $("#search-q").value.trim();
  go(1);
});
$("#prev-page").addEventListener("click", () => go(Math.max(1, state.page - 1)));
$("#next-page").addEventListener("click", () => go(state.page + 1));

await Promise.all([loadFacets(), load()]);
if (currentCart()) applyCart(currentCart());
document.body.dataset.ready = "true";
