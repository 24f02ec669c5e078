// The console's shell: navigation (a "Menu" button on narrow screens), sign-in, and the hash router.
//
// Every view is a URL (#datasets, #datasets/<name>, #sql, #search, #chat, #status), so links,
// the back button and bookmarks work. Any 401 from the API brings the sign-in form back.

import { get, session } from "./api.js";
import * as chat from "./chat.js";
import * as datasets from "./datasets.js";
import * as search from "./search.js";
import * as sql from "./sql.js";
import * as status from "./status.js";

const PAGES = { datasets, sql, search, chat, status };
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const menu = document.getElementById("menu");
const signin = document.getElementById("signin");
const signinForm = document.getElementById("signin-form");
const signinError = document.getElementById("signin-error");
const tokenBox = document.getElementById("token");
const signout = document.getElementById("signout");

let cleanup = null;

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [page, ...rest] = hash.split("/");
  return { page: PAGES[page] ? page : "datasets", rest };
}

function render({ focus = true } = {}) {
  if (cleanup) cleanup();
  cleanup = null;
  const { page, rest } = route();
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · lakehouse console`;
  const done = PAGES[page].render(main, rest);
  if (typeof done === "function") cleanup = done;
  if (focus) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

function closeMenu() {
  nav.classList.remove("open");
  menu.setAttribute("aria-expanded", "false");
}

menu.addEventListener("click", () => {
  const open = !nav.classList.contains("open");
  nav.classList.toggle("open", open);
  menu.setAttribute("aria-expanded", String(open));
  if (open) nav.querySelector("a").focus();
});
nav.addEventListener("click", (event) => {
  if (event.target.closest("a")) closeMenu();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && nav.classList.contains("open")) {
    closeMenu();
    menu.focus();
  }
});

function showSignIn(message) {
  signin.hidden = false;
  main.hidden = true;
  signout.hidden = true;
  signinError.textContent = message || "";
  tokenBox.focus();
}

function signedIn() {
  signin.hidden = true;
  main.hidden = false;
  signout.hidden = !session.token;
}

window.addEventListener("lakehouse:unauthorized", (event) => {
  if (session.token) {
    session.signOut();
    showSignIn(`Signed out: ${event.detail}`);
  } else {
    showSignIn("");
  }
});

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = tokenBox.value.trim();
  if (!token) return;
  session.signIn(token);
  try {
    await get("/v1/catalog/datasets?limit=1");
  } catch (error) {
    session.signOut();
    signinError.textContent = error.status === 401 ? "That token is not valid: unknown, expired or revoked." : error.message;
    return;
  }
  tokenBox.value = "";
  signedIn();
  render();
});

signout.addEventListener("click", () => {
  session.signOut();
  signout.hidden = true;
  render();
});

window.addEventListener("hashchange", () => render());
signedIn();
render({ focus: false });
