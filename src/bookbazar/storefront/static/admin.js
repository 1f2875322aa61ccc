// The operator page: orders by status, stock per book with restock, the stock audit, the
// payments given back, dead letters with retry.
import {
  $,
  api,
  clearAlert,
  formatDateTime,
  h,
  initPage,
  live,
  money,
  say,
  shortId,
  showAlert,
  srOnly,
  statusLabel,
} from "./common.js";

const STATUSES = [
  "PENDING",
  "PAYMENT_PENDING",
  "PAID",
  "FULFILLING",
  "SHIPPED",
  "DELIVERED",
  "EXPIRED",
  "CANCELLED",
  "FAILED",
  "REFUND_PENDING",
  "REFUNDED",
];
const state = { books: new Map() };

function table(caption, headers, rows) {
  // Each cell carries its column name, shown beside it when a phone stacks the rows.
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (headers[i]) cell.dataset.label = headers[i];
    });
  }
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows),
  );
}

// ------------------------------------------------------------------ orders

async function loadOrders() {
  const status = $("#orders-status").value;
  const query = new URLSearchParams({ pageSize: "50" });
  if (status) query.set("status", status);
  const result = await api("GET", `/admin/orders?${query}`);
  if (!result.ok) return showAlert(`Could not load orders: ${result.message}`);
  const { items, counts, total } = result.data;
  $("#order-counts").replaceChildren(
    ...STATUSES.filter((s) => counts[s]).map((s) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link-button",
            "aria-pressed": String(s === status),
            onclick: () => {
              $("#orders-status").value = s;
              loadOrders();
            },
          },
          `${statusLabel(s)}: ${counts[s]}`,
        ),
      ),
    ),
  );
  const box = $("#admin-orders");
  if (!items.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No orders in this status."));
    return;
  }
  box.replaceChildren(
    table(
      `Orders${status ? ` with status ${statusLabel(status)}` : ""} (${total})`,
      ["Order", "Customer", "Status", "Units", "Total", "Placed"],
      items.map((o) =>
        h(
          "tr",
          { dataset: { orderId: o.orderId, status: o.status } },
          h("td", {}, h("code", {}, shortId(o.orderId))),
          h("td", {}, o.customer.email),
          h("td", {}, statusLabel(o.status)),
          h("td", {}, String(o.units)),
          h("td", {}, money(o.total, o.currency)),
          h("td", {}, formatDateTime(o.createdAt)),
        ),
      ),
    ),
  );
}

$("#orders-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadOrders();
});

// ------------------------------------------------------------------ stock

function stockRow(book) {
  const inputId = `restock-${book.id}`;
  const row = h(
    "tr",
    { dataset: { bookId: book.id } },
    h("th", { scope: "row" }, book.title, h("span", { class: "muted" }, ` — ${book.author}`)),
    h("td", { class: "on-hand" }, String(book.stock)),
    h("td", { class: "available" }, String(book.available)),
    h(
      "td",
      {},
      h(
        "form",
        {
          class: "inline-form restock-form",
          onsubmit: (event) => {
            event.preventDefault();
            restock(book, row);
          },
        },
        h("label", { for: inputId, class: "visually-hidden" }, `Units to add to ${book.title}`),
        h("input", {
          id: inputId,
          class: "qty-input",
          type: "number",
          inputmode: "numeric",
          min: 1,
          max: 1000000,
          value: 5,
          required: true,
        }),
        h("button", { type: "submit" }, "Restock", srOnly(` ${book.title}`)),
      ),
    ),
  );
  return row;
}

async function loadStock() {
  const result = await api("GET", "/admin/inventory?pageSize=100");
  if (!result.ok) return showAlert(`Could not load stock: ${result.message}`);
  state.books = new Map(result.data.items.map((b) => [b.id, b]));
  $("#admin-stock").replaceChildren(
    table(
      "Stock per book",
      ["Book", "On hand", "Available", "Restock"],
      result.data.items.map(stockRow),
    ),
  );
  live.watchBooks([...state.books.keys()]);
}

async function restock(book, row) {
  const input = $(".qty-input", row);
  const quantity = Number(input.value);
  if (!Number.isInteger(quantity) || quantity < 1) {
    showAlert("Restock with a whole number of units, 1 or more.", "warning");
    input.focus();
    return;
  }
  const button = $("button", row);
  button.disabled = true;
  clearAlert();
  const result = await api("POST", `/admin/books/${book.id}/restock`, { body: { quantity } });
  button.disabled = false;
  if (!result.ok) return showAlert(result.message);
  Object.assign(book, result.data);
  $(".on-hand", row).textContent = String(book.stock);
  $(".available", row).textContent = String(book.available);
  say(`Restocked “${book.title}”: ${book.stock} on hand, ${book.available} available.`);
}

live.on("stock:update", ({ bookId, available }) => {
  const book = state.books.get(bookId);
  if (!book) return;
  book.available = available;
  const row = document.querySelector(`tr[data-book-id="${CSS.escape(bookId)}"]`);
  if (row) $(".available", row).textContent = String(available);
});
live.on("order.*", () => loadOrders());

// ------------------------------------------------------------------ stock audit

function showAudit(audit) {
  const box = $("#admin-audit");
  if (!audit) {
    box.replaceChildren(h("p", { class: "muted", id: "audit-none" }, "No audit has run yet."));
    return;
  }
  const summary = h(
    "p",
    { id: "audit-summary" },
    `Last audit ${formatDateTime(audit.finishedAt)}: ${audit.booksChecked} books and `,
    `${audit.holdsChecked} holds checked, `,
    audit.driftUnits
      ? h("strong", {}, `${audit.driftUnits} units of drift repaired`)
      : "no drift",
    audit.holdsRepaired.length ? `, ${audit.holdsRepaired.length} holds repaired.` : ".",
  );
  if (!audit.corrections.length) {
    box.replaceChildren(summary);
    return;
  }
  box.replaceChildren(
    summary,
    table(
      "Counters the audit corrected",
      ["Book", "Counter was", "Now"],
      audit.corrections.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, state.books.get(c.bookId)?.title ?? shortId(c.bookId)),
          h("td", {}, String(c.before)),
          h("td", {}, String(c.after)),
        ),
      ),
    ),
  );
}

async function loadAudit() {
  const result = await api("GET", "/admin/stock-audit");
  if (!result.ok) return showAlert(`Could not load the stock audit: ${result.message}`);
  showAudit(result.data);
}

$("#audit-run").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  clearAlert();
  const result = await api("POST", "/admin/stock-audit");
  button.disabled = false;
  if (!result.ok) return showAlert(result.message);
  showAudit(result.data);
  say(result.data.driftUnits ? `Audit repaired ${result.data.driftUnits} units.` : "Audit found no drift.");
});

// ------------------------------------------------------------------ payments given back

async function loadReview() {
  const result = await api("GET", "/admin/payments/review?pageSize=50");
  if (!result.ok) return showAlert(`Could not load the payments given back: ${result.message}`);
  const box = $("#admin-review");
  const { items, total } = result.data;
  if (!items.length) {
    box.replaceChildren(h("p", { class: "muted", id: "review-empty" }, "None: every payment paid its order."));
    return;
  }
  box.replaceChildren(
    table(
      `Payments given back (${total})`,
      ["Order", "Customer", "Amount", "Why", "Refund", "When"],
      items.map((p) =>
        h(
          "tr",
          { dataset: { paymentId: p.paymentId } },
          h("td", {}, h("code", {}, shortId(p.orderId))),
          h("td", {}, p.customer),
          h("td", {}, money(p.amount, p.currency)),
          h("td", { class: "reason" }, p.reason || ""),
          h("td", {}, p.status === "refunded" ? `Refunded (${p.refundId})` : "Being refunded"),
          h("td", {}, formatDateTime(p.updatedAt)),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ dead letters

async function loadDeadLetters() {
  const result = await api("GET", "/admin/dead-letter?limit=100");
  if (!result.ok) return showAlert(`Could not load the dead-letter queue: ${result.message}`);
  const box = $("#admin-dlq");
  const { items, total } = result.data;
  if (!items.length) {
    box.replaceChildren(h("p", { class: "muted", id: "dlq-empty" }, "No dead letters. Every job succeeded or is still retrying."));
    return;
  }
  box.replaceChildren(
    table(
      `Dead letters (${total})`,
      ["Queue", "Job", "Reason", "Attempts", "When", ""],
      items.map((job) =>
        h(
          "tr",
          { dataset: { jobId: job.id } },
          h("td", {}, job.originalQueue || "?"),
          h(
            "td",
            {},
            job.name || "?",
            job.payload
              ? h(
                  "details",
                  {},
                  h("summary", {}, "Payload"),
                  h("pre", {}, JSON.stringify(job.payload, null, 2)),
                )
              : null,
          ),
          h("td", { class: "reason" }, job.reason || ""),
          h("td", {}, String(job.attemptsMade ?? "")),
          h("td", {}, job.deadLetteredAt ? formatDateTime(job.deadLetteredAt) : ""),
          h(
            "td",
            {},
            h(
              "button",
              { type: "button", class: "retry", onclick: (e) => retry(job, e.currentTarget) },
              "Retry",
              srOnly(` ${job.name} from ${job.originalQueue}`),
            ),
          ),
        ),
      ),
    ),
  );
}

async function retry(job, button) {
  button.disabled = true;
  clearAlert();
  const result = await api("POST", `/admin/dead-letter/${encodeURIComponent(job.id)}/retry`);
  if (!result.ok) {
    button.disabled = false;
    return showAlert(result.message);
  }
  say(`Re-queued ${result.data.name} on ${result.data.queue}.`);
  await loadDeadLetters();
  $("#dlq-refresh").focus();
}

$("#dlq-refresh").addEventListener("click", () => loadDeadLetters());

const user = await initPage();
if (!user || user.role !== "admin") {
  $("#admin-denied").hidden = false;
  document.body.dataset.ready = "true";
} else {
  $("#admin-view").hidden = false;
  const select = $("#orders-status");
  for (const status of STATUSES) select.append(h("option", { value: status }, statusLabel(status)));
  const initial = new URLSearchParams(location.search).get("status");
  if (initial && STATUSES.includes(initial)) select.value = initial;
  await Promise.all([loadOrders(), loadStock(), loadDeadLetters(), loadReview()]);
  await loadAudit(); // after the stock, to name the books it corrected
  document.body.dataset.ready = "true";
}
