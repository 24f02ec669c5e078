// Chat: a model from /v1/models, answers streamed from /v1/chat/completions, a Stop button,
// and an "Ask your data" switch that streams /v1/ask's steps, answer and citations.

import { events, get } from "./api.js";
import { cellText, errorText, field, h } from "./dom.js";

const MODEL_KEY = "lakehouse.chat.model";

export function render(main) {
  main.append(h("h1", {}, "Chat"));
  const model = h("select", {});
  const ask = h("input", { type: "checkbox", role: "switch" });
  const message = h("textarea", { rows: "3" });
  const sendButton = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const clear = h("button", { type: "button" }, "New conversation");
  const log = h("div", { class: "transcript", role: "log", "aria-label": "Conversation", "aria-live": "polite" });
  const errorEl = h("p", { class: "error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "panel" },
    h("div", { class: "row" }, field("Model", model), h("div", { class: "field switch" }, ask, h("label", { for: (ask.id = "ask-switch") }, "Ask your data"))),
    field("Message", message, "Ctrl+Enter sends. With “Ask your data”, the model answers from the datasets and indexes, showing each step."),
    h("div", { class: "row" }, sendButton, stop, clear),
  );
  main.append(log, errorEl, form);

  get("/v1/models")
    .then((answer) => {
      const ids = (answer.data || []).map((m) => m.id).filter((id) => typeof id === "string");
      const kept = localStorage.getItem(MODEL_KEY);
      for (const id of ids) model.append(h("option", { value: id, selected: id === kept }, id));
      if (!ids.length) model.append(h("option", { value: "" }, "(no models: is a provider running?)"));
    })
    .catch((error) => {
      errorEl.hidden = false;
      errorEl.textContent = errorText(error);
    });
  model.addEventListener("change", () => localStorage.setItem(MODEL_KEY, model.value));

  const history = [];
  let controller = null;

  function bubble(role, text = "") {
    const body = h("div", { class: "content" }, text);
    const item = h("article", { class: `msg ${role}` }, h("h2", { class: "who" }, role === "user" ? "You" : role === "assistant" ? "Assistant" : "Ask"), body);
    log.append(item);
    item.scrollIntoView({ block: "end" });
    return { item, body };
  }

  async function chatTurn(signal, out) {
    let text = "";
    for await (const { data } of events("/v1/chat/completions", { model: model.value, messages: history, stream: true }, signal)) {
      if (data === "[DONE]") break;
      if (data && data.error) throw Object.assign(new Error(data.error.message || "the answer failed"), { detail: {} });
      const choice = data && data.choices && data.choices[0];
      const piece = choice ? (choice.delta ? choice.delta.content : choice.message && choice.message.content) : null;
      if (piece) {
        text += piece;
        out.body.textContent = text;
      }
    }
    history.push({ role: "assistant", content: text });
  }

  async function askTurn(question, signal, out) {
    const steps = h("ol", { class: "steps", "aria-label": "Steps" });
    const answer = h("div", { class: "answer" });
    const cites = h("ul", { class: "citations", "aria-label": "Citations" });
    out.body.replaceChildren(steps, answer, cites);
    const showStep = (step) => {
      steps.append(
        h(
          "li",
          {},
          h("details", {}, h("summary", {}, `Step ${steps.children.length + 1}: ${step.tool}`), h("pre", { class: "code" }, "input: ", cellText(step.input)), h("pre", { class: "code" }, "output: ", cellText(step.output))),
        ),
      );
    };
    const finish = (body) => {
      if (typeof body.answer === "string") answer.textContent = body.answer;
      if (Array.isArray(body.steps) && !steps.children.length) body.steps.forEach(showStep);
      for (const c of body.citations || []) cites.append(h("li", {}, cellText(c)));
    };
    for await (const { event, data } of events("/v1/ask", { question, model: model.value, stream: true }, signal)) {
      if (data === "[DONE]") break;
      if (data && typeof data === "object" && data.error) throw Object.assign(new Error(data.error.message || "the answer failed"), { detail: data.error });
      if (event === "json" || event === "answer" || (data && typeof data === "object" && "answer" in data)) finish(data || {});
      else if (data && typeof data === "object" && data.tool) showStep(data);
      else if (data && typeof data === "object" && data.delta) answer.textContent += String(data.delta);
    }
  }

  async function submit() {
    const text = message.value.trim();
    if (!text || controller) return;
    if (!model.value) {
      errorEl.hidden = false;
      errorEl.textContent = "Pick a model first.";
      return;
    }
    errorEl.hidden = true;
    message.value = "";
    bubble("user", text);
    const asking = ask.checked;
    const out = bubble(asking ? "ask" : "assistant");
    out.item.setAttribute("aria-busy", "true");
    controller = new AbortController();
    sendButton.disabled = true;
    stop.disabled = false;
    try {
      if (asking) await askTurn(text, controller.signal, out);
      else {
        history.push({ role: "user", content: text });
        await chatTurn(controller.signal, out);
      }
    } catch (error) {
      if (error.name === "AbortError") {
        out.item.append(h("p", { class: "hint" }, "Stopped."));
        if (!asking) history.push({ role: "assistant", content: out.body.textContent });
      } else {
        if (!asking) history.pop();
        errorEl.hidden = false;
        errorEl.textContent = errorText(error);
      }
    } finally {
      out.item.removeAttribute("aria-busy");
      controller = null;
      sendButton.disabled = false;
      stop.disabled = true;
      message.focus();
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
    }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  clear.addEventListener("click", () => {
    if (controller) controller.abort();
    history.length = 0;
    log.replaceChildren();
  });
  return () => controller && controller.abort();
}
