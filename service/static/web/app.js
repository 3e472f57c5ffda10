// The "try the models" page: everything goes through the friendly JSON API under /api.
// Plain JavaScript, no libraries; DOM built with textContent only (never innerHTML), so
// nothing an API or a file name returns can become markup.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const ui = {
    model: $("model"),
    version: $("version"),
    description: $("description"),
    pageError: $("page-error"),
    imageInput: $("image-input"),
    imageHint: $("image-hint"),
    dropzone: $("dropzone"),
    fileInput: $("file-input"),
    form: $("feature-form"),
    fields: $("feature-fields"),
    predictButton: $("predict-button"),
    resetButton: $("reset-button"),
    status: $("status"),
    error: $("error"),
    results: $("results"),
    clearActions: $("clear-actions"),
    clearButton: $("clear-button"),
    metrics: $("metrics"),
    perClass: $("per-class"),
    plots: $("plots"),
    apiExample: $("api-example"),
    apiExampleCode: $("api-example-code"),
    keyForm: $("key-form"),
    keyInput: $("api-key"),
  };

  // The API key, when the server asks for one: this tab only (sessionStorage), never in the address.
  const KEY_STORAGE = "model-server-api-key";

  const state = {
    models: [],   // GET /api/models
    card: null,   // GET /api/models/{name}/versions/{v}
    generation: 0, // bumps on every model/version change: late answers for an old choice are dropped
    busy: 0,
    apiKey: sessionStorage.getItem(KEY_STORAGE) || "",
    objectUrls: [], // plots fetched with the key, released when the view is cleared
  };

  // ---------------------------------------------------------------- helpers

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function authorization() {
    return state.apiKey ? { Authorization: `Bearer ${state.apiKey}` } : {};
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { Accept: "application/json", ...authorization() } });
    } catch (exc) {
      throw new ApiError(`Could not reach the server (${exc.message}).`, 0);
    }
    if (response.status === 401) askForKey();
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (!response.ok) {
      if (body && typeof body.error === "string") throw new ApiError(body.error, response.status);
      throw new ApiError(`The server answered ${response.status} ${response.statusText}`.trim() + ".", response.status);
    }
    if (body === null) throw new ApiError("The server's answer was not JSON.", response.status);
    return body;
  }

  const enc = encodeURIComponent;
  const modelPath = (name, version) => `/api/models/${enc(name)}/versions/${enc(version)}`;

  function percent(p) {
    if (typeof p !== "number" || !Number.isFinite(p)) return "–";
    const value = p * 100;
    if (value > 0 && value < 0.1) return "<0.1%";
    if (value < 100 && value > 99.9) return ">99.9%";
    return `${value.toFixed(1)}%`;
  }

  function number(value, digits = 4) {
    if (typeof value !== "number" || !Number.isFinite(value)) return String(value ?? "–");
    return String(Number(value.toPrecision(digits)));
  }

  function humanize(text) {
    const words = String(text).replace(/_/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function setMessage(node, text) {
    node.textContent = text || "";
    show(node, Boolean(text));
  }

  function setBusy(delta, text) {
    state.busy = Math.max(0, state.busy + delta);
    ui.predictButton.disabled = state.busy > 0;
    ui.dropzone.classList.toggle("busy", state.busy > 0);
    setMessage(ui.status, state.busy > 0 ? text : "");
  }

  // --------------------------------------------------------- models, versions

  function askForKey() {
    show(ui.keyForm, true);
    ui.keyInput.value = state.apiKey;
  }

  function useKey(event) {
    event.preventDefault();
    state.apiKey = ui.keyInput.value.trim();
    if (state.apiKey) sessionStorage.setItem(KEY_STORAGE, state.apiKey);
    else sessionStorage.removeItem(KEY_STORAGE);
    setMessage(ui.pageError, "");
    loadModels();
  }

  // A plot is an image the API serves: with a key it is fetched with the key, as a blob.
  function showImage(img, link, url) {
    if (!state.apiKey) {
      img.src = url;
      link.href = url;
      return;
    }
    fetch(url, { headers: authorization() })
      .then((response) => (response.ok ? response.blob() : Promise.reject(new Error(String(response.status)))))
      .then((blob) => {
        const objectUrl = URL.createObjectURL(blob);
        state.objectUrls.push(objectUrl);
        img.src = link.href = objectUrl;
      })
      .catch((exc) => {
        img.alt = `${img.alt} (could not be loaded: ${exc.message})`;
      });
  }

  async function loadModels() {
    let listing;
    try {
      listing = await api("/api/models");
    } catch (exc) {
      ui.model.replaceChildren(h("option", { text: "No models" }));
      setMessage(ui.pageError, `Could not list the models: ${exc.message}`);
      return;
    }
    state.models = listing.models || [];
    if (!state.models.length) {
      ui.model.replaceChildren(h("option", { text: "No models" }));
      setMessage(ui.pageError, "The server has no models to try.");
      return;
    }
    ui.model.replaceChildren(...state.models.map((m) => h("option", { value: m.name, text: m.name })));
    ui.model.disabled = false;
    const wanted = new URLSearchParams(location.hash.slice(1));
    const initial = state.models.find((m) => m.name === wanted.get("model")) || state.models[0];
    ui.model.value = initial.name;
    selectModel(wanted.get("version"));
  }

  function currentModel() {
    return state.models.find((m) => m.name === ui.model.value);
  }

  function selectModel(preferredVersion) {
    const model = currentModel();
    if (!model) return;
    const labelsByVersion = {};
    for (const [label, version] of Object.entries(model.labels || {})) {
      (labelsByVersion[version] ||= []).push(label);
    }
    const options = [...model.versions]
      .sort((a, b) => b.version - a.version)
      .map((v) => {
        const notes = [];
        if (v.version === model.default_version) notes.push("default");
        notes.push(...(labelsByVersion[v.version] || []));
        if (v.state !== "AVAILABLE") notes.push(v.state.toLowerCase());
        const text = notes.length ? `${v.version} (${notes.join(", ")})` : String(v.version);
        return h("option", {
          value: String(v.version), text, disabled: v.state !== "AVAILABLE", title: v.error || undefined,
        });
      });
    ui.version.replaceChildren(...options);
    ui.version.disabled = !options.length;
    ui.description.textContent = model.description || "";

    const available = model.versions.filter((v) => v.state === "AVAILABLE").map((v) => String(v.version));
    let version = available.includes(preferredVersion) ? preferredVersion : null;
    if (!version && model.default_version !== null && model.default_version !== undefined) {
      version = String(model.default_version);
    }
    if (!version) {
      const failures = model.versions.filter((v) => v.error).map((v) => `version ${v.version}: ${v.error}`);
      clearModelView();
      setMessage(ui.pageError, `Model ${model.name} has no version ready to serve.` +
        (failures.length ? ` ${failures.join("; ")}` : ""));
      return;
    }
    ui.version.value = version;
    loadCard();
  }

  function clearModelView() {
    state.generation += 1;
    state.card = null;
    setMessage(ui.pageError, "");
    setMessage(ui.error, "");
    clearResults();
    show(ui.imageInput, false);
    show(ui.form, false);
    ui.metrics.replaceChildren();
    ui.perClass.replaceChildren();
    ui.plots.replaceChildren();
    for (const objectUrl of state.objectUrls.splice(0)) URL.revokeObjectURL(objectUrl);
    show(ui.apiExample, false);
  }

  async function loadCard() {
    clearModelView();
    const generation = state.generation;
    const name = ui.model.value;
    const version = ui.version.value;
    history.replaceState(null, "", `#model=${enc(name)}&version=${enc(version)}`);
    document.body.dataset.ready = "false";
    let card;
    try {
      card = await api(modelPath(name, version));
    } catch (exc) {
      if (generation === state.generation) {
        setMessage(ui.pageError, `Could not load model ${name} version ${version}: ${exc.message}`);
      }
      return;
    }
    if (generation !== state.generation) return;
    state.card = card;
    renderAbout(card);
    renderInput(card);
    document.body.dataset.ready = "true";
    document.body.dataset.model = card.name;
  }

  // ------------------------------------------------------------ about panel

  function renderAbout(card) {
    const evaluation = card.evaluation || {};
    const rows = [
      ["Served version", String(card.served_version ?? card.version), "served-version"],
      ["Task", card.task],
      ["Trained", card.created ? card.created.slice(0, 10) : null],
      ["Test samples", evaluation.test_samples],
      ["Test accuracy", evaluation.accuracy !== undefined ? percent(evaluation.accuracy) : null, "accuracy"],
      ["Test loss", evaluation.loss !== undefined ? number(evaluation.loss) : null, "loss"],
      ["Mean absolute error", evaluation.mean_absolute_error !== undefined
        ? number(evaluation.mean_absolute_error) : null, "mae"],
    ];
    ui.metrics.replaceChildren(...rows
      .filter(([, value]) => value !== null && value !== undefined)
      .map(([term, value, key]) => h("div", { class: "metric", dataset: key ? { metric: key } : undefined },
        h("dt", { text: term }), h("dd", { text: String(value) }))));

    const spanish = spanishNames(card);
    if (Array.isArray(evaluation.per_class) && evaluation.per_class.length) {
      const head = h("tr", {}, ["Class", "Precision", "Recall", "F1", "Support"]
        .map((t, i) => h("th", { scope: "col", class: i ? "num" : undefined, text: t })));
      const body = evaluation.per_class.map((row) => h("tr", {},
        h("th", { scope: "row" }, row.class, spanish[row.class] ? h("span", { class: "es", text: spanish[row.class] }) : null),
        h("td", { class: "num", text: number(row.precision, 3) }),
        h("td", { class: "num", text: number(row.recall, 3) }),
        h("td", { class: "num", text: number(row.f1, 3) }),
        h("td", { class: "num", text: String(row.support) })));
      ui.perClass.replaceChildren(h("table", { id: "per-class-table" },
        h("caption", { text: "Per class, on the test set" }), h("thead", {}, head), h("tbody", {}, body)));
    } else if (Array.isArray(evaluation.predictions) && evaluation.predictions.length) {
      const keys = Object.keys(evaluation.predictions[0]);
      ui.perClass.replaceChildren(h("table", { id: "test-predictions-table" },
        h("caption", { text: "Test inputs" }),
        h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col", class: "num", text: humanize(k) })))),
        h("tbody", {}, evaluation.predictions.map((row) => h("tr", {},
          keys.map((k) => h("td", { class: "num", text: number(row[k], 6) })))))));
    }

    const captions = { confusion_matrix: "Confusion matrix (test set)", training_curves: "Training curves" };
    const order = (key) => (key in captions ? Object.keys(captions).indexOf(key) : 99);
    const plots = Object.entries(card.plots || {}).sort(([a], [b]) => order(a) - order(b));
    ui.plots.replaceChildren(...plots.map(([key, url]) => {
      const img = h("img", { alt: captions[key] || humanize(key), decoding: "async" });
      const link = h("a", { target: "_blank", rel: "noopener", title: "Open full size" }, img);
      showImage(img, link, url);
      return h("figure", { class: "plot", dataset: { plot: key } }, link,
        h("figcaption", { text: captions[key] || humanize(key) }));
    }));

    const example = card.example_request;
    if (example && example.path) {
      const url = location.origin + example.path;
      // The key itself is never shown: the example names a shell variable for it.
      const key = state.apiKey ? "-H \"Authorization: Bearer $API_KEY\" " : "";
      let text;
      if (example.content_type === "multipart/form-data") {
        text = `curl ${key}-F image=@shirt.jpg '${url}?preview=1'`;
      } else {
        text = `curl ${key}-H 'Content-Type: application/json' \\\n  -d '${JSON.stringify(example.body)}' \\\n  ${url}`;
      }
      ui.apiExampleCode.textContent = text;
      show(ui.apiExample, true);
    }
  }

  function spanishNames(card) {
    const names = {};
    for (const c of card.classes || []) if (c && c.name_es) names[c.name] = c.name_es;
    return names;
  }

  // ------------------------------------------------------------- input panel

  function renderInput(card) {
    const input = card.input || {};
    if (input.kind === "image") {
      const image = input.image || {};
      const size = image.width && image.height ? `${image.width}×${image.height}` : "small";
      ui.imageHint.textContent = `The model sees a ${size} picture` +
        (image.description ? ` (${image.description})` : "") +
        ". Photos are converted to that; the small square next to each result is exactly what it receives.";
      show(ui.imageInput, true);
      return;
    }
    if (Array.isArray(input.features) && input.features.length) {
      renderForm(card, input.features);
      show(ui.form, true);
      return;
    }
    setMessage(ui.error, "This model's input cannot be entered on this page; use the API.");
  }

  function exampleValues(card) {
    const instances = card.example_request?.body?.instances;
    const first = Array.isArray(instances) ? instances[0] : null;
    return first && typeof first === "object" && !Array.isArray(first) ? first : {};
  }

  function renderForm(card, features) {
    const examples = exampleValues(card);
    ui.fields.replaceChildren(...features.map((feature) => {
      const id = `feature-${feature.name}`;
      const description = String(feature.description || "").trim();
      // "sepal_length_cm" described as "sepal length": the description is the better label.
      // "x" described as "any real number": keep the name, and the description as a hint.
      const bareName = feature.name.replace(/_/g, " ").replace(new RegExp(` ${feature.unit}$`), "").toLowerCase();
      const describesName = description && description.toLowerCase() === bareName;
      const example = typeof examples[feature.name] === "number" ? String(number(examples[feature.name], 6)) : "";
      return h("div", { class: "field" },
        h("label", { for: id },
          h("span", { text: describesName ? humanize(description) : feature.name }),
          feature.unit ? h("span", { class: "unit", text: ` (${feature.unit})` }) : null),
        h("input", {
          id, name: feature.name, type: "number", step: "any", inputmode: "decimal", required: true,
          value: example, dataset: { example }, "aria-describedby": description && !describesName ? `${id}-hint` : null,
        }),
        description && !describesName ? h("span", { id: `${id}-hint`, class: "hint", text: description }) : null);
    }));
    ui.resetButton.hidden = !Object.keys(examples).length;
  }

  async function predictFeatures(event) {
    event.preventDefault();
    const card = state.card;
    if (!card || state.busy) return;
    const instance = {};
    for (const input of ui.fields.querySelectorAll("input")) {
      const raw = input.value.trim();
      // An empty or unparsable box goes as null: the API's own message says what is wrong.
      instance[input.name] = raw === "" || !Number.isFinite(Number(raw)) ? null : Number(raw);
    }
    const generation = state.generation;
    setMessage(ui.error, "");
    setBusy(1, "Predicting…");
    try {
      const answer = await api(`${modelPath(card.name, card.served_version)}/predict`, {
        method: "POST",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ instances: [instance] }),
      });
      if (generation !== state.generation) return;
      clearResults();
      const prediction = answer.predictions[0];
      ui.results.append(resultCard(card, prediction, { inputs: instance, version: answer.version }));
      show(ui.clearActions, true);
    } catch (exc) {
      if (generation === state.generation) setMessage(ui.error, exc.message);
    } finally {
      setBusy(-1);
    }
  }

  // ------------------------------------------------------------------ images

  function readAsDataURL(file) {
    return new Promise((resolve) => {
      if (!file.type.startsWith("image/") || file.size > 20 * 1024 * 1024) {
        resolve(null);
        return;
      }
      const reader = new FileReader();
      reader.onload = () => resolve(typeof reader.result === "string" ? reader.result : null);
      reader.onerror = () => resolve(null);
      reader.readAsDataURL(file);
    });
  }

  async function predictImages(fileList) {
    const card = state.card;
    const files = [...(fileList || [])];
    if (!card || card.input?.kind !== "image" || !files.length) return;
    const generation = state.generation;
    const form = new FormData();
    files.forEach((file, i) => form.append("image", file, file.name || `pasted-${i + 1}.png`));
    setMessage(ui.error, "");
    setBusy(1, files.length === 1 ? "Classifying 1 image…" : `Classifying ${files.length} images…`);
    try {
      const [answer, originals] = await Promise.all([
        api(`${modelPath(card.name, card.served_version)}/predict?preview=1`, { method: "POST", body: form }),
        Promise.all(files.map(readAsDataURL)),
      ]);
      if (generation !== state.generation) return;
      const cards = answer.predictions.map((prediction, i) =>
        resultCard(card, prediction, { original: originals[i], file: prediction.file || files[i].name,
          version: answer.version }));
      ui.results.prepend(...cards);
      show(ui.clearActions, true);
    } catch (exc) {
      if (generation === state.generation) setMessage(ui.error, exc.message);
    } finally {
      setBusy(-1);
      ui.fileInput.value = "";
    }
  }

  function filesFromTransfer(transfer) {
    if (!transfer) return [];
    if (transfer.files && transfer.files.length) return [...transfer.files];
    return [...(transfer.items || [])]
      .filter((item) => item.kind === "file")
      .map((item) => item.getAsFile())
      .filter(Boolean);
  }

  // ----------------------------------------------------------------- results

  function resultCard(card, prediction, context) {
    const node = h("article", { class: "result", dataset: { file: context.file || "" } });
    if ("value" in prediction) {
      const inputs = Object.entries(context.inputs || {})
        .map(([k, v]) => `${k} = ${v === null ? "?" : number(v, 6)}`).join(", ");
      const output = card.output?.name || "value";
      node.classList.add("regression");
      node.append(
        h("p", { class: "result-inputs", text: inputs }),
        h("p", { class: "result-value", dataset: { value: String(prediction.value) } },
          h("span", { class: "arrow", text: `${output} = ` }),
          h("output", { text: number(prediction.value, 6) })),
        h("p", { class: "result-meta", text: `${card.name} version ${context.version}` }));
      return node;
    }
    if (!prediction.probabilities) {
      node.append(h("pre", { text: JSON.stringify(prediction, null, 2) }));
      return node;
    }

    const pictures = [];
    if (prediction.preview) {
      pictures.push(h("figure", { class: "preview" },
        h("img", { src: prediction.preview, alt: `What the model receives for ${context.file}`, width: 112, height: 112 }),
        h("figcaption", { text: "model input" })));
    }
    if (context.original) {
      pictures.push(h("figure", { class: "original" },
        h("img", { src: context.original, alt: `Uploaded ${context.file}` }),
        h("figcaption", {
          text: prediction.width && prediction.height ? `yours, ${prediction.width}×${prediction.height}` : "yours",
        })));
    }
    const spanish = prediction.label_es || spanishNames(card)[prediction.label];
    const header = h("header", { class: "result-header" },
      context.file ? h("p", { class: "result-file", text: context.file }) : null,
      h("p", { class: "result-top" },
        h("span", { class: "result-label", dataset: { label: prediction.label }, text: prediction.label }),
        spanish ? h("span", { class: "result-label-es", lang: "es", text: spanish }) : null),
      h("p", { class: "result-probability", text: `${percent(prediction.probability)} sure` }));
    const meta = h("p", { class: "result-meta", text: `${card.name} version ${context.version}` });

    if (pictures.length) node.append(h("div", { class: "pictures" }, pictures));
    node.append(h("div", { class: "result-body" }, header, barChart(card, prediction), meta));
    return node;
  }

  function barChart(card, prediction) {
    const spanish = spanishNames(card);
    const rows = Object.entries(prediction.probabilities).map(([name, p]) => {
      const fill = h("span", { class: "bar-fill" });
      fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
      return h("li", { class: name === prediction.label ? "bar-row top" : "bar-row", dataset: { class: name, p: String(p) } },
        h("span", { class: "bar-name" }, name, spanish[name] ? h("span", { class: "es", lang: "es", text: spanish[name] }) : null),
        h("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        h("span", { class: "bar-value", text: percent(p) }));
    });
    return h("ol", { class: "bars", "aria-label": "Probability of each class" }, rows);
  }

  function clearResults() {
    ui.results.replaceChildren();
    show(ui.clearActions, false);
  }

  // ------------------------------------------------------------------ events

  function wireEvents() {
    ui.keyForm.addEventListener("submit", useKey);
    ui.model.addEventListener("change", () => selectModel(null));
    ui.version.addEventListener("change", loadCard);
    ui.form.addEventListener("submit", predictFeatures);
    ui.resetButton.addEventListener("click", () => {
      for (const input of ui.fields.querySelectorAll("input")) input.value = input.dataset.example || "";
    });
    ui.clearButton.addEventListener("click", () => {
      clearResults();
      setMessage(ui.error, "");
    });
    ui.fileInput.addEventListener("change", () => predictImages(ui.fileInput.files));

    const imageMode = () => state.card?.input?.kind === "image";
    for (const type of ["dragenter", "dragover"]) {
      ui.dropzone.addEventListener(type, (event) => {
        event.preventDefault();
        ui.dropzone.classList.add("dragging");
      });
    }
    for (const type of ["dragleave", "dragend"]) {
      ui.dropzone.addEventListener(type, () => ui.dropzone.classList.remove("dragging"));
    }
    ui.dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      event.stopPropagation();
      ui.dropzone.classList.remove("dragging");
      predictImages(filesFromTransfer(event.dataTransfer));
    });
    // A file dropped next to the zone must not make the browser navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => {
      event.preventDefault();
      if (imageMode()) predictImages(filesFromTransfer(event.dataTransfer));
    });
    document.addEventListener("paste", (event) => {
      if (!imageMode()) return;
      const files = filesFromTransfer(event.clipboardData);
      if (!files.length) return;
      event.preventDefault();
      predictImages(files.map((file, i) => (file.name && file.name !== "image.png")
        ? file : new File([file], `pasted-${Date.now()}-${i + 1}.${(file.type.split("/")[1] || "png")}`,
          { type: file.type })));
    });
  }

  wireEvents();
  if (state.apiKey) askForKey();
  loadModels();
})();
