// Sign in and register. The API sets an HttpOnly cookie; the page never stores the token.
import { $, api, clearAlert, initPage, safeNext, showAlert } from "./common.js";

const next = safeNext(new URLSearchParams(location.search).get("next"));
const user = await initPage({ live: false });
if (user) {
  showAlert(`You are signed in as ${user.email}. Sign out first to use another account.`, "info");
}

function problem(result) {
  if (result.status === 429) {
    const wait = result.headers.get("Retry-After");
    return `Too many attempts. Try again in ${wait || "a few"} seconds.`;
  }
  if (result.status === 401) return "That email and password do not match an account.";
  if (result.errors.length && result.errors[0].field) {
    return result.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  }
  return result.message;
}

async function submit(form, path, body) {
  const button = $("button[type=submit]", form);
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  clearAlert();
  const result = await api("POST", path, { body });
  form.removeAttribute("aria-busy");
  button.disabled = false;
  if (result.ok) {
    location.assign(next);
    return;
  }
  showAlert(problem(result));
}

function requireFilled(form) {
  for (const input of form.querySelectorAll("input[required]")) {
    if (!input.checkValidity()) {
      const label = $(`label[for="${input.id}"]`).textContent;
      input.setAttribute("aria-invalid", "true");
      showAlert(`${label}: ${input.validationMessage}`);
      input.focus();
      return false;
    }
    input.removeAttribute("aria-invalid");
  }
  return true;
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  if (!requireFilled(form)) return;
  submit(form, "/auth/login", {
    email: $("#login-email").value.trim(),
    password: $("#login-password").value,
  });
});

$("#register-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  if (!requireFilled(form)) return;
  submit(form, "/auth/register", {
    name: $("#register-name").value.trim(),
    email: $("#register-email").value.trim(),
    password: $("#register-password").value,
  });
});
document.body.dataset.ready = "true";
