// The seed's testClient.js (token in the accessToken cookie, logs cart:update), made
// scriptable for tests/realtime/test_node_client.py. Each line on stdout is one JSON object.
//
//   node testClient.js [url] [token]          (or BB_URL / BB_TOKEN)
//   BB_CARRIER=cookie|auth|header             where the token goes (default: the seed's cookie)
//   BB_EXPECT=N                               exit 0 after N cart:update events (0: run on)
//   BB_TIMEOUT_MS=T                           exit 2 if still running after T ms
import { io } from "socket.io-client";

const url = process.argv[2] || process.env.BB_URL || "http://localhost:8000";
const token = process.argv[3] ?? process.env.BB_TOKEN ?? "your_jwt_token_here";
const carrier = process.env.BB_CARRIER || "cookie";
const expected = Number(process.env.BB_EXPECT || 0);
const timeoutMs = Number(process.env.BB_TIMEOUT_MS || 0);

const out = (record) => console.log(JSON.stringify(record));

const options = {};
if (carrier === "cookie") {
  options.extraHeaders = { Cookie: `accessToken=${token}` };
} else if (carrier === "header") {
  options.extraHeaders = { Authorization: `Bearer ${token}` };
} else if (carrier === "auth") {
  options.auth = { token };
} else {
  out({ type: "usage_error", message: `unknown BB_CARRIER ${carrier}` });
  process.exit(64);
}

const socket = io(url, options);
let received = 0;

socket.on("connect", () =>
  out({ type: "connect", id: socket.id, transport: socket.io.engine.transport.name }),
);
socket.on("connect_error", (err) => {
  out({ type: "connect_error", message: err.message });
  socket.close();
  process.exit(1);
});
socket.on("cart:update", (data) => {
  out({ type: "cart:update", data });
  received += 1;
  if (expected > 0 && received >= expected) {
    socket.close();
    process.exit(0);
  }
});

if (timeoutMs > 0) {
  setTimeout(() => {
    out({ type: "timeout", received });
    socket.close();
    process.exit(2);
  }, timeoutMs).unref();
}
