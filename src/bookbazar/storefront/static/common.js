// Shared by every storefront page: the API client, DOM and money helpers, the page
// header (who is signed in, cart count), the message regions and the live connection.

const API = "/api/v1";

/** Call the REST API. Never throws: the result says what happened.
 * @returns {Promise<{status:number, ok:boolean, data:any, message:string, errors:any[], headers:Headers}>}
 */
export async function api(method, path, { body, headers } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(headers || {}) },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(API + path, init);
  } catch {
    return {
      status: 0,
      ok: false,
      data: null,
      message: "Could not reach the store. Check your connection and try again.",
      errors: [],
      headers: new Headers(),
    };
  }
  let json = null;
  try {
    json = await resp.json();
  } catch {
    json = null;
  }
  return {
    status: resp.status,
    ok: resp.ok,
    data: json && "data" in json ? json.data : null,
    message: (json && json.message) || resp.statusText || `HTTP ${resp.status}`,
    errors: (json && Array.isArray(json.errors) && json.errors) || [],
    headers: resp.headers,
  };
}

/** Build an element: h("button", {class: "x", onclick: fn, disabled: true}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Text only a screen reader reads (e.g. which book a repeated "Remove" button is for). */
export const srOnly = (text) => h("span", { class: "visually-hidden" }, text);

const digitsCache = new Map();
/** Integer minor units (paise/cents) to a localised price, using the currency's own
 * number of decimals. */
export function money(minor, currency) {
  if (!currency) return String(minor);
  let digits = digitsCache.get(currency);
  if (digits === undefined) {
    digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits;
    digitsCache.set(currency, digits);
  }
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(
    minor / 10 ** digits,
  );
}

/** The most of one book a cart line takes (as the API allows). */
export const MAX_LINE = 10;

/** Put the quantity a form asks for of `book` in the cart, and tell the buyer what
 * happened: added, adjusted to what is available, sold out, or why not. `onCart(cart)`
 * applies the new cart; `onSoldOut()` shows the book as sold out. */
export async function addToCartFrom({ user, book, input, button, note, onCart, onSoldOut }) {
  if (!user) {
    goToLogin();
    return;
  }
  const quantity = Number(input.value);
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > MAX_LINE) {
    note.textContent = `Choose a whole number from 1 to ${MAX_LINE}.`;
    input.focus();
    return;
  }
  button.disabled = true;
  clearAlert();
  const result = await api("POST", "/cart/add", { body: { bookId: book.id, quantity } });
  button.disabled = book.available <= 0;
  if (result.status === 401) {
    goToLogin();
    return;
  }
  if (result.ok) {
    onCart(result.data);
    if (result.data.adjusted) {
      const { available, quantity: got, requested } = result.data.adjusted;
      const text = `Quantity adjusted: only ${available} of “${book.title}” available, so your cart has ${got} instead of ${requested}.`;
      note.textContent = text;
      note.classList.add("warning");
      input.value = String(got);
      showAlert(text, "warning");
    } else {
      note.textContent = "";
      note.classList.remove("warning");
      say(`“${book.title}”: ${quantity} in your cart.`);
    }
    return;
  }
  if (result.status === 409) {
    book.available = 0;
    onSoldOut();
    const text = `Sold out: “${book.title}” has no copies left right now.`;
    note.textContent = text;
    showAlert(text, "warning");
    return;
  }
  note.textContent = result.message;
  showAlert(result.message);
}

/** What a buyer is told about a book's availability. */
export function stockText(available) {
  if (available <= 0) return "Sold out";
  if (available <= 3) return `Only ${available} left`;
  return `${available} in stock`;
}

export function shortId(id) {
  return String(id).slice(0, 8).toUpperCase();
}

export function formatTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? "" : when.toLocaleTimeString();
}

export function formatDateTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? "" : when.toLocaleString();
}

// ------------------------------------------------------------------ messages

/** A polite announcement (also shown): confirmations and live changes. */
export function say(text) {
  const region = $("#status");
  if (!region) return;
  // Re-setting identical text is not announced again; clear first.
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = text;
  }, 30);
}

/** Something the buyer must act on (sold out, expired, declined, errors). */
export function showAlert(text, kind = "error") {
  const box = $("#alert");
  if (!box) return;
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

export function clearAlert() {
  const box = $("#alert");
  if (box) {
    box.hidden = true;
    box.textContent = "";
  }
}

export function goToLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

/** A safe post-login destination: a path on this site only. */
export function safeNext(raw) {
  if (typeof raw === "string" && raw.startsWith("/") && !raw.startsWith("//")) return raw;
  return "/";
}

// ------------------------------------------------------------------ the header

let currentUser = null;

export function setCartCount(items) {
  const count = (items || []).reduce((sum, item) => sum + (item.quantity || 0), 0);
  const badge = $("#cart-count");
  if (badge) {
    badge.textContent = String(count);
    badge.dataset.count = String(count);
  }
}

async function signOut() {
  await api("POST", "/auth/logout");
  try {
    sessionStorage.clear();
  } catch {
    /* storage may be unavailable; nothing to clear then */
  }
  location.assign("/");
}

function renderHeader(user) {
  const nav = document.body.dataset.nav;
  for (const link of document.querySelectorAll("[data-nav-item]")) {
    if (link.dataset.navItem === nav) link.setAttribute("aria-current", "page");
  }
  const account = $("#nav-account");
  if (user && account) {
    account.replaceChildren(
      h(
        "button",
        { type: "button", class: "link-button", id: "sign-out", onclick: signOut },
        "Sign out",
        srOnly(` ${user.name || user.email}`),
      ),
    );
    account.prepend(h("span", { class: "who" }, user.name || user.email, " "));
  }
  const admin = $("#nav-admin");
  if (admin) admin.hidden = !(user && user.role === "admin");
}

/** Every page calls this first: who is signed in (or null), header and live connection. */
export async function initPage({ live: wantLive = true } = {}) {
  const me = await api("GET", "/auth/me");
  currentUser = me.ok && me.data ? me.data.user : null;
  renderHeader(currentUser);
  if (currentUser) {
    await readCart();
    live.on("cart:update", (event) => {
      // Our own changes arrive here too: only a newer version than we hold is read.
      if (!cartValue || event.version > cartValue.version) readCart();
    });
    if (wantLive) live.start(currentUser);
  }
  return currentUser;
}

// ------------------------------------------------------------------ the cart, read once
// One read per page load and one per cart:update, shared by the header's count and the
// page (catalog, cart, checkout), which subscribe instead of reading again.

let cartValue = null;
const cartListeners = [];

/** The signed-in buyer's cart as last read or changed (null when signed out). */
export function currentCart() {
  return cartValue;
}

/** Called with the cart each time another tab's change made us read it again. */
export function onCartChange(listener) {
  cartListeners.push(listener);
}

/** A page that changed the cart itself passes the answer here (it is the newest cart). */
export function cartChanged(cart) {
  cartValue = cart;
  setCartCount(cart.items);
}

async function readCart() {
  const cart = await api("GET", "/cart");
  if (!cart.ok) return;
  const first = cartValue === null;
  cartChanged(cart.data);
  if (!first) for (const listener of cartListeners) listener(cart.data);
}

// ------------------------------------------------------------------ live updates

const ORDER_EVENTS = [
  "order.created",
  "order.paid",
  "order.payment_failed",
  "order.expired",
  "order.cancelled",
  "order.fulfilling",
  "order.shipped",
  "order.delivered",
  "order.refunded",
];
const SEEN_LIMIT = 500;

/** One Socket.IO connection per page, authenticated by the HttpOnly cookie. Deduplicates
 * events by id (delivery is at least once), remembers the last event id in this tab, and on
 * every reconnect asks the server to `resume` from it; pages re-read their state then. */
class Live {
  constructor() {
    this.socket = null;
    this.handlers = new Map();
    this.connectHandlers = [];
    this.books = new Set();
    this.seen = new Set();
    this.seenOrder = [];
    this.connectedOnce = false;
    this.storageKey = null;
  }

  start(user) {
    if (this.socket || typeof window.io !== "function") return;
    this.storageKey = `bb.lastEventId.${user.id}`;
    const socket = window.io({ path: "/socket.io", withCredentials: true });
    this.socket = socket;
    socket.on("connect", () => this.onConnect());
    socket.on("disconnect", () => setLiveState("reconnecting"));
    socket.on("connect_error", (err) => {
      setLiveState("offline");
      if (!socket.active) {
        showAlert(`Live updates are off: ${err.message}. Reload the page to try again.`);
      }
    });
    for (const event of ["cart:update", ...ORDER_EVENTS]) {
      socket.on(event, (payload) => this.deliver(event, payload, true));
    }
    socket.on("stock:update", (payload) => this.deliver("stock:update", payload, false));
  }

  get connected() {
    return Boolean(this.socket && this.socket.connected);
  }

  lastEventId() {
    try {
      return this.storageKey ? sessionStorage.getItem(this.storageKey) : null;
    } catch {
      return null;
    }
  }

  onConnect() {
    setLiveState("live");
    const reconnect = this.connectedOnce;
    this.connectedOnce = true;
    const lastEventId = this.lastEventId();
    // Catch up on what happened while this tab had no connection (a reconnect, or the
    // page before this one: the sandbox payment page, a reload).
    if (reconnect || lastEventId) {
      this.socket.emit("resume", lastEventId ? { lastEventId } : {}, (ack) => {
        document.body.dataset.resumed = String((ack && ack.data && ack.data.count) || 0);
      });
    }
    for (const bookId of this.books) this.subscribe(bookId);
    for (const handler of this.connectHandlers) handler({ reconnect });
  }

  deliver(event, payload, tracked) {
    if (tracked && payload && payload.id) {
      if (this.seen.has(payload.id)) return;
      this.seen.add(payload.id);
      this.seenOrder.push(payload.id);
      if (this.seenOrder.length > SEEN_LIMIT) this.seen.delete(this.seenOrder.shift());
      try {
        if (this.storageKey) sessionStorage.setItem(this.storageKey, payload.id);
      } catch {
        /* without storage, resume starts from what the server still retains */
      }
    }
    for (const handler of this.handlers.get(event) || []) handler(payload, event);
  }

  /** Listen to an event ("cart:update", "stock:update", "order.*" for every order event). */
  on(event, handler) {
    const names = event === "order.*" ? ORDER_EVENTS : [event];
    for (const name of names) {
      if (!this.handlers.has(name)) this.handlers.set(name, []);
      this.handlers.get(name).push(handler);
    }
  }

  /** Called on every (re)connection with {reconnect: boolean}. */
  onConnected(handler) {
    this.connectHandlers.push(handler);
  }

  subscribe(bookId) {
    this.socket.emit("subscribe", { bookId }, (ack) => {
      if (ack && ack.success) {
        document.body.dataset.watching = String(ack.data.subscriptions);
      } else if (ack) {
        say(`Live stock for some books is off: ${ack.message}`);
      }
    });
  }

  /** Watch exactly these books' stock rooms (rejoined after every reconnect). */
  watchBooks(bookIds) {
    const wanted = new Set(bookIds);
    for (const bookId of this.books) {
      if (!wanted.has(bookId)) {
        this.books.delete(bookId);
        if (this.connected) this.socket.emit("unsubscribe", { bookId });
      }
    }
    for (const bookId of wanted) {
      if (!this.books.has(bookId)) {
        this.books.add(bookId);
        if (this.connected) this.subscribe(bookId);
      }
    }
  }
}

export const live = new Live();

function setLiveState(state) {
  const box = $("#live-state");
  const text = $("#live-state-text");
  if (!box || !text) return;
  box.hidden = false;
  box.dataset.state = state;
  text.textContent = { live: "Live", reconnecting: "Reconnecting…", offline: "Offline" }[state];
  document.body.dataset.live = state;
}

// ------------------------------------------------------------------ reservation countdown

/** Show "mm:ss" until `expiresAt` in `el` (role=timer, not announced every second); the
 * buyer hears one warning at a minute left, and `onExpired` runs once at zero. */
export function countdown(el, expiresAt, onExpired) {
  const deadline = new Date(expiresAt).getTime();
  let warned = false;
  let done = false;
  const tick = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    el.textContent = `${minutes}:${seconds}`;
    el.setAttribute("aria-label", `${minutes} minutes ${seconds} seconds`);
    if (!warned && left > 0 && left <= 60) {
      warned = true;
      say("About one minute left to pay before the reservation ends.");
    }
    if (left === 0 && !done) {
      done = true;
      window.clearInterval(timer);
      if (onExpired) onExpired();
    }
  };
  const timer = window.setInterval(tick, 1000);
  tick();
  return () => window.clearInterval(timer);
}

// ------------------------------------------------------------------ order statuses

export const STATUS_LABELS = {
  PENDING: "Being placed",
  PAYMENT_PENDING: "Awaiting payment",
  PAID: "Paid",
  FULFILLING: "Being prepared",
  SHIPPED: "Shipped",
  DELIVERED: "Delivered",
  EXPIRED: "Reservation expired",
  CANCELLED: "Cancelled",
  FAILED: "Failed",
  REFUND_PENDING: "Refund in progress",
  REFUNDED: "Refunded",
};

export const statusLabel = (status) => STATUS_LABELS[status] || status;

/** A random UUID, also where crypto.randomUUID is missing (plain-http LAN addresses). */
export function newIdempotencyKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
