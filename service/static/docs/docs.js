// Renders the server's own /openapi.json: operations by tag, parameters, schemas as trees,
// examples, and a "try it" form that sends the example (editable) to this server.
// Every text goes through textContent, never innerHTML: card texts come from model files.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];
const MAX_SHOWN = 20000;   // characters of a response body shown by "try it"
let spec = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// JSON with short arrays of plain values on one line: a 28x28 image stays readable.
function pretty(value, indent = "") {
  const plain = (v) => v === null || typeof v !== "object";
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    if (value.every(plain)) return "[" + value.map((v) => JSON.stringify(v)).join(", ") + "]";
    const inner = indent + "  ";
    return "[\n" + value.map((v) => inner + pretty(v, inner)).join(",\n") + "\n" + indent + "]";
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 0) return "{}";
    const inner = indent + "  ";
    return "{\n" + keys.map((k) => inner + JSON.stringify(k) + ": " + pretty(value[k], inner)).join(",\n") +
      "\n" + indent + "}";
  }
  return JSON.stringify(value);
}

function lookup(ref) {
  if (!ref.startsWith("#/")) return {};
  return ref.slice(2).split("/").reduce((node, key) => (node ? node[key.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined), spec) || {};
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

function resolve(schema) {
  let current = schema || {};
  for (let i = 0; i < 10 && current.$ref; i++) {
    const { $ref, ...rest } = current;
    current = { ...lookup($ref), ...rest };
  }
  return current;
}

function range(min, max) {
  if (min === undefined && max === undefined) return "";
  if (min === max) return String(min);
  return `${min ?? ""}..${max ?? ""}`;
}

// A one-line description for leaves and chains of arrays ("array[1..256] of array[4] of number"), else null.
function inline(schema, seen) {
  const name = refName(schema);
  if (name && seen.has(name)) return `${name} (recursive)`;
  const s = resolve(schema);
  if ("const" in s) return "= " + JSON.stringify(s.const);
  if (s.enum) {
    const shown = s.enum.slice(0, 12).map((v) => JSON.stringify(v)).join(", ");
    return "one of " + shown + (s.enum.length > 12 ? `, … (${s.enum.length})` : "");
  }
  const type = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
  if (type === "array" && s.prefixItems) {
    const parts = s.prefixItems.map((item) => inline(item, seen) || "…");
    return "[" + parts.join(", ") + "]";
  }
  if (type === "array") {
    const count = range(s.minItems, s.maxItems);
    const items = s.items ? inline(s.items, seen) : "any";
    return items === null ? null : `array${count ? "[" + count + "]" : ""} of ${items}`;
  }
  if (s.anyOf || s.oneOf || s.properties) return null;
  if (type === "object") return s.additionalProperties && typeof s.additionalProperties === "object"
    ? `object of ${inline(s.additionalProperties, seen) || "objects"}` : "object";
  if (!type) return s.format === "binary" ? "binary" : "any";
  const bounds = range(s.minimum, s.maximum);
  return type + (bounds ? " " + bounds : "") + (s.format ? ` (${s.format})` : "") +
    (s.contentMediaType ? ` (${s.contentMediaType})` : "");
}

function schemaTree(schema, seen = new Set(), depth = 0) {
  const list = el("ul", { class: depth === 0 ? "schema root" : "schema" });
  const name = refName(schema);
  const nextSeen = new Set(seen);
  if (name) nextSeen.add(name);
  const s = resolve(schema);
  const line = inline(schema, seen);
  if (line !== null || depth > 8) {
    list.append(el("li", {}, el("span", { class: "type", text: line ?? "…" }), note(s)));
    return list;
  }
  if (name && depth === 0) list.append(el("li", { class: "note", text: name }));
  if (s.description && !s.properties) list.append(el("li", { class: "note", text: s.description }));
  const options = s.anyOf || s.oneOf;
  if (s.properties) {
    if (s.description) list.append(el("li", { class: "note", text: s.description }));
    const required = new Set(s.required || []);
    for (const [prop, sub] of Object.entries(s.properties)) {
      const text = inline(sub, nextSeen);
      const item = el("li", {}, el("span", { class: "prop", text: prop }), " ",
        required.has(prop) ? el("span", { class: "req", text: "required " }) : null,
        text !== null ? el("span", { class: "type", text }) : null, text !== null ? note(resolve(sub)) : null);
      if (text === null) item.append(schemaTree(sub, nextSeen, depth + 1));
      list.append(item);
    }
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      list.append(el("li", {}, el("span", { class: "note", text: "other keys: " }),
        schemaTree(s.additionalProperties, nextSeen, depth + 1)));
    }
  }
  if (options) {
    const label = s.properties ? "and one of these shapes:" : (s.oneOf ? "exactly one of:" : "any of:");
    const item = el("li", {}, el("span", { class: "note", text: label }));
    options.forEach((option, index) => {
      item.append(el("div", {}, el("span", { class: "note", text: `option ${index + 1}` }),
        schemaTree(option, nextSeen, depth + 1)));
    });
    list.append(item);
  }
  if (!s.properties && !options && s.type === "array" && s.items) {
    list.append(el("li", {}, el("span", { class: "type", text: `array${range(s.minItems, s.maxItems) ? "[" + range(s.minItems, s.maxItems) + "]" : ""} of` }),
      schemaTree(s.items, nextSeen, depth + 1)));
  }
  return list;
}

function note(s) {
  return s && s.description ? el("span", { class: "note", text: " — " + s.description }) : null;
}

function examplesOf(media) {
  return Object.entries((media && media.examples) || {}).map(([key, example]) => [key, example.value]);
}

function contentBlock(content) {
  const block = el("div");
  for (const [type, media] of Object.entries(content || {})) {
    block.append(el("h4", { text: type }));
    if (media.schema && Object.keys(media.schema).length) block.append(schemaTree(media.schema));
    for (const [key, value] of examplesOf(media)) {
      block.append(el("details", {}, el("summary", { text: `example: ${key}` }), el("pre", { text: pretty(value) })));
    }
  }
  return block;
}

function parametersTable(parameters) {
  const rows = parameters.map((p) => el("tr", {},
    el("td", {}, el("code", { text: p.name })),
    el("td", { text: p.in + (p.required ? ", required" : "") }),
    el("td", { class: "type", text: inline(p.schema || {}, new Set()) || "" }),
    el("td", { text: (p.description || "") + (p.example !== undefined ? ` (e.g. ${p.example})` : "") })));
  return el("table", {}, el("tr", {}, el("th", { text: "name" }), el("th", { text: "in" }),
    el("th", { text: "type" }), el("th", { text: "description" })), rows);
}

function tryIt(path, method, op) {
  const params = (op.parameters || []).filter((p) => p.in === "path" || p.in === "query");
  const inputs = new Map();
  const form = el("div", { class: "try" }, el("strong", { text: "Try it " }));
  for (const p of params) {
    const input = el("input", { value: p.example ?? "", size: 14, "aria-label": p.name });
    inputs.set(p, input);
    form.append(el("label", {}, el("code", { text: p.name }), input));
  }
  const json = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  let body = null;
  if (json) {
    const examples = examplesOf(json);
    body = el("textarea", { spellcheck: "false", "aria-label": "request body" });
    body.value = examples.length ? pretty(examples[0][1]) : "{}";
    if (examples.length > 1) {
      const select = el("select", { "aria-label": "example", onchange: () => { body.value = pretty(examples[select.selectedIndex][1]); } },
        examples.map(([key]) => el("option", { text: key })));
      form.append(el("label", {}, "example", select));
    }
    form.append(body);
  }
  const status = el("div");
  const output = el("pre", { class: "hidden" });
  const send = async () => {
    let url = path;
    const query = new URLSearchParams();
    for (const [p, input] of inputs) {
      if (p.in === "path") url = url.replace("{" + p.name + "}", encodeURIComponent(input.value));
      else if (input.value !== "") query.set(p.name, input.value);
    }
    url = url.replace(/^\//, "") + (query.toString() ? "?" + query : "");
    const init = { method: method.toUpperCase(), headers: {} };
    if (body) { init.body = body.value; init.headers["Content-Type"] = "application/json"; }
    status.textContent = "…";
    output.classList.add("hidden");
    try {
      const started = performance.now();
      const response = await fetch(url, init);
      const took = Math.round(performance.now() - started);
      const type = response.headers.get("Content-Type") || "";
      status.replaceChildren(el("span", { class: response.ok ? "status-ok" : "status-bad", text: `${response.status} ${response.statusText}` }),
        ` ${type}, ${took} ms`);
      let text;
      if (type.includes("json")) text = pretty(await response.json());
      else if (type.startsWith("text/")) text = await response.text();
      else text = `(${(await response.arrayBuffer()).byteLength} bytes of ${type || "binary data"})`;
      output.textContent = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) + "\n… (cut)" : text;
      output.classList.remove("hidden");
    } catch (error) {
      status.replaceChildren(el("span", { class: "status-bad", text: String(error) }));
    }
  };
  form.append(el("div", {}, el("button", { type: "button", onclick: send, text: "Send" })), status, output);
  return form;
}

function operationBody(path, method, op) {
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", { text: op.description }));
  if (op.parameters && op.parameters.length) body.append(el("h3", { text: "Parameters" }), parametersTable(op.parameters));
  if (op.requestBody) body.append(el("h3", { text: "Request body" }), contentBlock(op.requestBody.content));
  body.append(el("h3", { text: "Responses" }));
  for (const [code, response] of Object.entries(op.responses || {})) {
    body.append(el("div", {}, el("strong", { text: code }), " ", response.description || ""), contentBlock(response.content));
  }
  body.append(tryIt(path, method, op));
  return body;
}

function render() {
  document.title = `${spec.info.title} ${spec.info.version} — API`;
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("description").textContent = spec.info.description || "";
  const byTag = new Map((spec.tags || []).map((tag) => [tag.name, { tag, ops: [] }]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["Other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
      byTag.get(tag).ops.push([path, method, item[method]]);
    }
  }
  const nav = document.getElementById("nav");
  const main = document.getElementById("operations");
  for (const { tag, ops } of byTag.values()) {
    if (!ops.length) continue;
    nav.append(el("h2", { text: tag.name }));
    const section = el("section", { class: "tag" }, el("h2", { text: tag.name }), tag.description ? el("p", { text: tag.description }) : null);
    for (const [path, method, op] of ops) {
      const id = op.operationId || `${method}${path}`;
      nav.append(el("a", { href: "#" + id, "data-op": id }, el("span", { class: "path", text: `${method.toUpperCase()} ${path}` })));
      const details = el("details", { class: "op", id, "data-search": `${method} ${path} ${op.summary || ""}`.toLowerCase() },
        el("summary", {}, el("span", { class: `method ${method}`, text: method.toUpperCase() }),
          el("span", { class: "path", text: path }), el("span", { class: "summary", text: op.summary || "" })));
      // Built on first open: the image models' examples are large.
      details.addEventListener("toggle", () => {
        if (details.open && details.children.length === 1) details.append(operationBody(path, method, op));
      });
      section.append(details);
    }
    main.append(section);
  }
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) { target.open = true; target.scrollIntoView(); }
  nav.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-op]");
    if (link) document.getElementById(link.dataset.op).open = true;
  });
}

function filter(text) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  for (const details of document.querySelectorAll("details.op")) {
    const match = words.every((word) => details.dataset.search.includes(word));
    details.classList.toggle("hidden", !match);
    const link = document.querySelector(`nav a[data-op="${CSS.escape(details.id)}"]`);
    if (link) link.classList.toggle("hidden", !match);
  }
}

async function main() {
  try {
    const response = await fetch("openapi.json");
    if (!response.ok) throw new Error(`openapi.json: ${response.status} ${response.statusText}`);
    spec = await response.json();
    render();
  } catch (error) {
    document.getElementById("description").textContent = `Could not load the API document: ${error.message}`;
    return;
  }
  document.getElementById("filter").addEventListener("input", (event) => filter(event.target.value));
}

main();
