// rclip-hf explore: the page over the app's JSON API. Every name, id and query is put in the page as text
// (textContent, never as markup); the map is Leaflet, in web-mercator for georeferenced scenes and in pixels
// (CRS.Simple, y down as negative latitude) for the others.

const $ = (id) => document.getElementById(id);
const COLOURS = { positive: "#1a9850", negative: "#d73027", none: "#fdae61" };

const state = {
  info: null,
  scenes: new Map(),   // id -> scene
  scene: null,         // the scene on the map
  map: null,
  boxes: null,         // layer group of the listed hits on the current scene
  heat: null,          // layer group of the heat map
  list: [],            // hits or detections in the list
  mode: "hits",        // "hits" (search) or "detections" (classifier)
  selected: -1,
  trained: false,
};

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (!response.ok) {
    let reason = `${response.status} ${response.statusText}`;
    try { reason = (await response.json()).detail || reason; } catch (error) { /* not JSON */ }
    throw new Error(typeof reason === "string" ? reason : JSON.stringify(reason));
  }
  return response.json();
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function run(task) {
  try { await task(); } catch (error) { status(error.message, true); }
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// ----- scenes and the map ---------------------------------------------------------------------------------------
function sceneBounds(scene) {
  if (scene.space === "lonlat") {
    const [minx, miny, maxx, maxy] = scene.bounds;
    return L.latLngBounds([miny, minx], [maxy, maxx]);
  }
  return L.latLngBounds([-scene.height, 0], [0, scene.width]);
}

function windowLayer(hit, options) {
  if (hit.ring) return L.polygon(hit.ring.map(([x, y]) => [y, x]), options);
  const [left, top, width, height] = hit.window || [0, 0, state.scene.width, state.scene.height];
  return L.rectangle([[-(top + height), left], [-top, left + width]], options);
}

async function showScene(id) {
  const scene = state.scenes.get(id);
  if (!scene) return;
  if (scene.width === null) Object.assign(scene, await api(`api/scenes/${id}/size`));
  if (state.map) state.map.remove();
  state.scene = scene;
  const pixel = scene.space === "pixel";
  const map = L.map("map", { crs: pixel ? L.CRS.Simple : L.CRS.EPSG3857, minZoom: pixel ? -8 : 0,
                             maxZoom: pixel ? 4 : 22, zoomSnap: 1 });
  if (!pixel && state.info.basemap) L.tileLayer(state.info.basemap, { maxZoom: 22 }).addTo(map);
  L.tileLayer(`api/scenes/${id}/tiles/{z}/{x}/{y}.png`, {
    minZoom: pixel ? -8 : 0, maxZoom: pixel ? 4 : 22, noWrap: true, bounds: sceneBounds(scene),
  }).addTo(map);
  map.createPane("heat").style.zIndex = 390;
  state.heat = L.layerGroup().addTo(map);
  state.boxes = L.layerGroup().addTo(map);
  map.fitBounds(sceneBounds(scene));
  state.map = map;
  for (const item of $("scene-list").children) item.classList.toggle("current", item.dataset.id === id);
  drawBoxes();
  await drawHeat();
}

function drawBoxes() {
  if (!state.boxes) return;
  state.boxes.clearLayers();
  let front = null;
  state.list.forEach((hit, number) => {
    if (hit.scene !== state.scene.id) return;
    const colour = COLOURS[hit.label || "none"];
    const selected = number === state.selected ? " selected" : "";
    const layer = windowLayer(hit, { className: `hit-box ${hit.label || "unlabelled"}${selected}`, color: colour,
                                     weight: number === state.selected ? 4 : 2, fillOpacity: 0.08 });
    const stac = stacText(hit) ? ` (${stacText(hit)})` : "";
    layer.bindTooltip(element("span", `#${hit.rank} ${hit.score.toFixed(3)} ${hit.scene_name}${stac}`));
    layer.on("click", () => run(async () => {
      select(number);
      if (hit.position !== null) await setLabel(hit, nextLabel(hit.label));
    }));
    state.boxes.addLayer(layer);
    if (selected) front = layer;
  });
  front?.bringToFront();  // the selected box over the boxes it overlaps, so a click reaches it
  document.body.dataset.boxes = String(state.boxes.getLayers().length);
}

function heatColour(value) {  // 0..1 -> blue..red
  const hue = Math.round(240 * (1 - value));
  return `hsl(${hue}, 90%, 50%)`;
}

async function drawHeat() {
  if (!state.heat) return;
  state.heat.clearLayers();
  const source = $("heat").value;
  if (!source) return;
  const scores = await api(`api/scenes/${state.scene.id}/scores?source=${source}`);
  const span = scores.max - scores.min || 1;
  for (const cell of scores.windows) {
    const value = (cell.score - scores.min) / span;
    const options = { pane: "heat", stroke: false, fillColor: heatColour(value), fillOpacity: 0.35, interactive: false,
                      className: "heat-cell" };
    if (cell.bbox) {
      const [minx, miny, maxx, maxy] = cell.bbox;
      state.heat.addLayer(L.rectangle([[miny, minx], [maxy, maxx]], options));
    } else {
      state.heat.addLayer(windowLayer({ window: cell.window }, options));
    }
  }
}

// ----- the list ------------------------------------------------------------------------------------------------
function renderList() {
  const list = $("hit-list");
  list.replaceChildren();
  $("list-title").textContent = state.mode === "hits" ? `Hits (${state.list.length})` : `Detections (${state.list.length} shown)`;
  state.list.forEach((hit, number) => list.append(hitRow(hit, number)));
  drawBoxes();
}

function hitRow(hit, number, onSelect = () => select(number)) {
  const row = element("li", undefined, `hit ${hit.label || ""}${number === state.selected ? " selected" : ""}`);
  row.dataset.id = hit.id;
  if (hit.position !== null) {
    const image = element("img");
    image.alt = "";
    image.loading = "lazy";
    image.src = `api/windows/${hit.position}/thumbnail.png`;
    row.append(image);
  }
  const text = element("div", undefined, "text");
  text.append(element("span", `#${hit.rank} `), element("span", hit.score.toFixed(3), "score"),
              element("div", hit.scene_name, "scene-name"));
  const stac = stacText(hit);
  if (stac) text.append(element("div", stac, "stac"));
  if (hit.merged > 1) text.append(element("div", `${hit.merged} windows`));
  row.append(text);
  if (hit.position !== null) {
    for (const [label, sign] of [["positive", "+"], ["negative", "−"], [null, "×"]]) {
      const button = element("button", sign, `label-${label || "clear"}`);
      button.type = "button";
      button.title = label ? `mark ${label}` : "clear the label";
      button.addEventListener("click", (event) => { event.stopPropagation(); run(() => setLabel(hit, label)); });
      row.append(button);
    }
  }
  row.addEventListener("click", () => run(onSelect));
  return row;
}

function stacText(hit) {  // "collection / item · datetime" of a window of a STAC item, else ""
  if (!hit.stac_item) return "";
  return [hit.stac_collection ? `${hit.stac_collection} / ${hit.stac_item}` : hit.stac_item, hit.stac_datetime]
    .filter(Boolean).join(" · ");
}

async function select(number) {
  state.selected = number;
  const hit = state.list[number];
  if (!hit) return;
  for (const [other, row] of [...$("hit-list").children].entries()) row.classList.toggle("selected", other === number);
  $("hit-list").children[number]?.scrollIntoView({ block: "nearest" });
  if (!state.scene || hit.scene !== state.scene.id) await showScene(hit.scene);
  drawBoxes();
  const layer = windowLayer(hit, {});
  state.map.fitBounds(layer.getBounds(), { maxZoom: state.map.getZoom() > 0 ? state.map.getZoom() : undefined });
}

function nextLabel(label) {
  return label === undefined || label === null ? "positive" : label === "positive" ? "negative" : null;
}

async function setLabel(hit, label) {
  await api("api/labels", { method: "POST", headers: { "Content-Type": "application/json" },
                             body: JSON.stringify({ id: hit.id, label }) });
  for (const other of [...state.list, ...state.uncertain || []]) if (other.id === hit.id) other.label = label;
  renderList();
  renderUncertain();
  await countLabels();
}

async function countLabels() {
  const labels = (await api("api/labels")).labels;
  const positive = labels.filter((row) => row.label === "positive").length;
  document.body.dataset.labels = JSON.stringify(labels.map((row) => [row.id, row.label]).sort());
  status(`${positive} positive, ${labels.length - positive} negative labels in set ${state.info.label_set}`);
}

// ----- search, train, detections ------------------------------------------------------------------------------
async function showHits(response) {
  state.mode = "hits";
  state.list = response.hits;
  state.selected = state.list.length ? 0 : -1;
  renderList();
  if (state.list.length) await select(0);
  status(`${state.list.length} hits`);
  await drawHeat();
}

async function search(body) {
  const k = Number($("top-k").value) || 50;
  await showHits(await api("api/search", { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify({ ...body, k, merge: $("merge").checked }) }));
}

async function searchImage(file) {
  const form = new FormData();
  form.append("image", file);
  form.append("k", String(Number($("top-k").value) || 50));
  form.append("merge", String($("merge").checked));
  await showHits(await api("api/search/image", { method: "POST", body: form }));
}

async function train() {
  const result = await api("api/train", { method: "POST" });
  state.trained = true;
  state.uncertain = result.uncertain;
  $("train-status").textContent = `trained on ${result.positive} positive, ${result.negative} negative; ` +
    `${result.detections} of ${result.windows} windows ≥ 0.5`;
  renderUncertain();
  await detections();
}

function renderUncertain() {
  const list = $("uncertain-list");
  list.replaceChildren();
  (state.uncertain || []).forEach((hit, number) => list.append(hitRow(hit, number, async () => {
    state.list.splice(0, 0, hit);
    state.selected = 0;
    renderList();
    await select(0);
  })));
}

async function detections() {
  if (!state.trained) return;
  const threshold = Number($("threshold").value);
  const response = await api(`api/detections?threshold=${threshold}&merge=${$("merge").checked}`);
  state.mode = "detections";
  state.list = response.hits;
  state.selected = -1;
  $("detection-count").textContent = `${response.total} windows ≥ ${threshold.toFixed(2)}`;
  document.body.dataset.detections = String(response.total);
  renderList();
  await drawHeat();
}

async function exportAs(format) {
  const base = $("export-path").value.replace(/(\.labels)?\.(geojson|json|parquet)$/i, "");
  const path = base + { geojson: ".geojson", parquet: ".parquet", labels: ".labels.parquet" }[format];
  const body = { path, format, source: state.mode === "detections" ? "detections" : "hits",
                 threshold: Number($("threshold").value), merge: $("merge").checked };
  const result = await api("api/export", { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) });
  $("export-status").textContent = `wrote ${result.files.join(", ")}`;
}

// ----- start ----------------------------------------------------------------------------------------------------
function keyboard(event) {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const hit = state.list[state.selected];
  const labels = { p: "positive", n: "negative", x: null };
  if (event.key in labels && hit && hit.position !== null) run(() => setLabel(hit, labels[event.key]));
  else if (event.key === "j" && state.selected + 1 < state.list.length) run(() => select(state.selected + 1));
  else if (event.key === "k" && state.selected > 0) run(() => select(state.selected - 1));
}

async function start() {
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
  state.info = await api("api/info");
  $("label-set").textContent = `label set: ${state.info.label_set}`;
  const scenes = await api("api/scenes");
  for (const scene of scenes) {
    state.scenes.set(scene.id, scene);
    const item = element("li", `${scene.name} (${scene.windows})`);
    item.dataset.id = scene.id;
    item.title = scene.space === "pixel" ? "pixel coordinates" : scene.crs;
    item.addEventListener("click", () => run(() => showScene(scene.id)));
    $("scene-list").append(item);
  }
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(() => search({ text: $("query").value }));
  });
  $("search-examples").addEventListener("click", () => run(() => search({ examples: true })));
  $("image").addEventListener("change", () => { if ($("image").files[0]) run(() => searchImage($("image").files[0])); });
  $("train").addEventListener("click", () => run(train));
  let pending = null;
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    clearTimeout(pending);
    pending = setTimeout(() => run(detections), 150);
  });
  $("merge").addEventListener("change", () => run(detections));
  $("heat").addEventListener("change", () => run(drawHeat));
  $("export-geojson").addEventListener("click", () => run(() => exportAs("geojson")));
  $("export-parquet").addEventListener("click", () => run(() => exportAs("parquet")));
  $("export-labels").addEventListener("click", () => run(() => exportAs("labels")));
  document.addEventListener("keydown", keyboard);
  if (scenes.length) await showScene(scenes[0].id);
  await countLabels();
  document.body.dataset.ready = "true";
}

run(start);
