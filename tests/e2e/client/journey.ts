// A buyer's journey through a client generated from the live OpenAPI document
// (openapi-typescript + openapi-fetch). `tsc` type-checks every call and every field
// read below against the document, then the compiled script runs against the server:
// register -> catalog -> add to cart -> order (Idempotency-Key) -> payments/init ->
// sandbox pay -> read the order until the webhook made it PAID.
import createClient from "openapi-fetch";
import type { paths } from "./generated/api.js";

declare const process: { argv: string[] }; // Node's, without @types/node

const [baseUrl, bookId] = process.argv.slice(2);
if (!baseUrl || !bookId) throw new Error("usage: node build/journey.js <base url> <book id>");
const api = createClient<paths>({ baseUrl });

function must<T>(step: string, data: T | undefined, error: unknown): T {
  if (data === undefined) throw new Error(`${step} failed: ${JSON.stringify(error)}`);
  return data;
}

const email = `generated-client-${Date.now()}@example.com`;
const registered = await api.POST("/api/v1/auth/register", {
  body: { email, password: "a long enough password", name: "Generated Client" },
});
const token = must("register", registered.data, registered.error).data.accessToken;
const headers = { Authorization: `Bearer ${token}` };

const page = await api.GET("/api/v1/books", { params: { query: { pageSize: 5 } } });
if (must("catalog", page.data, page.error).data.total < 1) throw new Error("empty catalog");
const found = await api.GET("/api/v1/books/{book_id}", {
  params: { path: { book_id: bookId } },
});
const book = must("book", found.data, found.error).data;
if (book.available < 1) throw new Error(`not in stock: ${JSON.stringify(book)}`);

const added = await api.POST("/api/v1/cart/add", {
  headers,
  body: { bookId: book.id, quantity: 1 },
});
const cart = must("add to cart", added.data, added.error).data;
if (cart.items.length !== 1 || cart.total !== book.price) throw new Error("cart mismatch");

const placed = await api.POST("/api/v1/orders", {
  headers,
  params: { header: { "Idempotency-Key": `journey-${Date.now()}` } },
  body: {
    shippingAddress: {
      name: "Generated Client",
      line1: "1 Contract Street",
      city: "Pune",
      postalCode: "411001",
      country: "IN",
    },
  },
});
const order = must("order", placed.data, placed.error).data;
if (order.status !== "PAYMENT_PENDING" || order.total !== book.price) {
  throw new Error(`unexpected order ${JSON.stringify(order)}`);
}

const init = await api.POST("/api/v1/payments/init", {
  headers,
  body: { orderId: order.orderId },
});
const intent = must("payments/init", init.data, init.error).data;
if (intent.provider !== "sandbox" || intent.amount !== order.total) {
  throw new Error(`unexpected intent ${JSON.stringify(intent)}`);
}

// The sandbox provider's hosted page (not part of the API): the buyer presses Pay.
const paid = await fetch(`${baseUrl}/sandbox/checkout/${intent.paymentIntentId}/pay`, {
  method: "POST",
});
if (!paid.ok) throw new Error(`sandbox pay: ${paid.status}`);

let status: string = order.status;
for (let i = 0; i < 200 && status === "PAYMENT_PENDING"; i++) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  const read = await api.GET("/api/v1/orders/{order_id}", {
    headers,
    params: { path: { order_id: order.orderId } },
  });
  status = must("order read", read.data, read.error).data.status;
}
console.log(JSON.stringify({ orderId: order.orderId, status, total: order.total, email }));
