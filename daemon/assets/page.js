// flamed's web page: the targets, an inline interactive flame graph of a chosen
// window, a comparison (differential) view and download links. Plain script, no
// build step, nothing fetched from elsewhere. Every URL is relative to this
// script's folder, so the page works under a reverse proxy's path prefix.
// The page's own state lives in the URL (target, window or from/until, view,
// baseline, a_from/a_until, live); the flame graph's script keeps its zoom and
// search there too (x, y, s, i), so a link reproduces what is on screen.
(function () {
  "use strict";

  const script = document.currentScript;
  const nonce = script.nonce || "";
  const base = new URL("../", script.src);
  const TOKEN_KEY = "flamed-token";
  const PERIOD = 5000;
  const OUR_KEYS = ["target", "window", "from", "until", "view", "baseline", "a_from", "a_until",
    "live"];
  const GRAPH_KEYS = ["x", "y", "s", "i"];
  const UNITS = {ms: 0.001, s: 1, m: 60, h: 3600, d: 86400};

  const $ = (id) => document.getElementById(id);
  const holder = $("graph");
  let state = readState();
  let targets = [];
  let graphSeq = 0;
  let shownText = "";
  let listeners = [];
  let installCost = 0;
  let lastInstall = 0;

  class Refused extends Error {}

  // -- state in the URL -------------------------------------------------------------------

  function readState() {
    const q = new URLSearchParams(window.location.search);
    const from = q.get("from") || "";
    return {
      target: q.get("target") || "",
      window: q.get("window") || (from ? "custom" : "5m"),
      from: from,
      until: q.get("until") || "",
      view: q.get("view") === "diff" ? "diff" : "graph",
      baseline: q.get("baseline") === "ranges" ? "ranges" : "previous",
      aFrom: q.get("a_from") || "",
      aUntil: q.get("a_until") || "",
      live: q.get("live") !== "0",
    };
  }

  function writeState() {
    const old = new URLSearchParams(window.location.search);
    const q = new URLSearchParams();
    setIf(q, "target", state.target);
    if (state.window === "custom") {
      setIf(q, "from", state.from);
      setIf(q, "until", state.until);
    } else {
      q.set("window", state.window);
    }
    if (state.view === "diff") {
      q.set("view", "diff");
      if (state.baseline === "ranges") {
        q.set("baseline", "ranges");
        setIf(q, "a_from", state.aFrom);
        setIf(q, "a_until", state.aUntil);
      }
    }
    if (!state.live) {
      q.set("live", "0");
    }
    old.forEach((value, key) => {
      if (!OUR_KEYS.includes(key)) {
        q.set(key, value);
      }
    });
    replaceQuery(q);
  }

  function setIf(q, key, value) {
    if (value) {
      q.set(key, value);
    }
  }

  function replaceQuery(q) {
    const query = q.toString();
    const url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
    window.history.replaceState(window.history.state, "", url);
  }

  function dropFromUrl(keys) {
    const q = new URLSearchParams(window.location.search);
    keys.forEach((key) => q.delete(key));
    replaceQuery(q);
  }

  // -- talking to the daemon --------------------------------------------------------------

  function api(path, params) {
    const url = new URL(path, base);
    if (params) {
      url.search = params.toString();
    }
    return url.href;
  }

  function token() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (error) {
      return "";
    }
  }

  async function fetchApi(url) {
    const given = token();
    const headers = given ? {Authorization: "Bearer " + given} : {};
    const response = await fetch(url, {headers: headers, credentials: "same-origin"});
    if (response.status === 401) {
      const why = given ? "The daemon refused this bearer token (401 Unauthorized)."
        : "This daemon needs a bearer token.";
      askToken(why);
      throw new Refused(why);
    }
    return response;
  }

  function failure(error) {
    if (error instanceof Refused) {
      return error.message;
    }
    return "cannot reach the daemon: " + (error && error.message ? error.message : error);
  }

  async function answerText(response) {
    const text = (await response.text()).trim();
    return response.status + " " + response.statusText + (text ? ": " + text : "");
  }

  // -- the token --------------------------------------------------------------------------

  function askToken(reason) {
    $("token-reason").textContent = reason;
    $("token-form").hidden = false;
    setStatus(reason, true);
  }

  function saveToken(event) {
    event.preventDefault();
    const value = $("token-input").value.trim();
    try {
      window.sessionStorage.setItem(TOKEN_KEY, value);
    } catch (error) {
      setStatus("this browser keeps no session storage; the token is lost on reload", true);
    }
    $("token-input").value = "";
    $("token-form").hidden = true;
    $("token-button").hidden = !value;
    shownText = "";
    refresh(false);
  }

  // -- targets ----------------------------------------------------------------------------

  async function loadTargets() {
    let list;
    try {
      const response = await fetchApi(api("api/v1/targets"));
      if (!response.ok) {
        setStatus("targets: " + await answerText(response), true);
        return;
      }
      list = await response.json();
    } catch (error) {
      setStatus(failure(error), true);
      return;
    }
    targets = list;
    showTargets();
    setStatus("updated " + new Date().toLocaleTimeString() + " · " + list.length + " target" +
      (list.length === 1 ? "" : "s"), false);
    if (!state.target && list.length) {
      chooseTarget(list[0].name);
    } else if (!list.length) {
      showMessage("No targets are configured: add [[targets]] to the daemon's config.");
    }
  }

  function showTargets() {
    const body = $("targets").tBodies[0];
    body.replaceChildren(...targets.map(targetRow));
    const select = $("target");
    const names = targets.map((t) => t.name);
    if (state.target && !names.includes(state.target)) {
      names.push(state.target);
    }
    const same = select.options.length === names.length &&
      names.every((name, n) => select.options[n].value === name);
    if (!same) {
      select.replaceChildren(...names.map((name) => new Option(name, name)));
    }
    select.value = state.target;
  }

  function targetRow(target) {
    const row = document.createElement("tr");
    row.dataset.target = target.name;
    row.classList.toggle("chosen", target.name === state.target);
    const perSecond = (target.samples_last_minute || 0) / sampledSeconds(target);
    const note = targetNote(target);
    [
      [target.name],
      [target.state, "state-" + target.state],
      [pidList(target.pids || [])],
      [target.event || "—"],
      [perSecond.toFixed(perSecond < 10 ? 1 : 0), "num"],
      [held(target)],
      [String(target.restarts || 0), "num"],
      [note.text, note.error ? "note-error" : ""],
    ].forEach(([text, cls]) => row.appendChild(cell(text, cls)));
    row.addEventListener("click", () => chooseTarget(target.name));
    return row;
  }

  // The rate over the last minute, or over what is held when that is shorter.
  function sampledSeconds(target) {
    if (target.oldest == null || target.newest == null) {
      return 60;
    }
    return Math.min(60, Math.max(1, target.newest - target.oldest));
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) {
      td.className = cls;
    }
    return td;
  }

  function pidList(pids) {
    if (!pids.length) {
      return "—";
    }
    const shown = pids.slice(0, 6).join(", ");
    return pids.length > 6 ? shown + " and " + (pids.length - 6) + " more" : shown;
  }

  function held(target) {
    if (target.oldest == null || target.newest == null) {
      return "nothing yet";
    }
    return duration(target.newest - target.oldest);
  }

  function targetNote(target) {
    if (target.last_error) {
      const at = target.last_error_time ?
        " (" + new Date(target.last_error_time * 1000).toLocaleTimeString() + ")" : "";
      if (target.last_error_past && target.state !== "error") {
        return {text: "recovered since the last error" + at + ": " + target.last_error,
          error: false};
      }
      return {text: target.last_error + at, error: target.state === "error"};
    }
    if (target.state === "error") {
      return {text: "the sampler failed (no reason given)", error: true};
    }
    if (target.state === "waiting") {
      return {text: "waiting: no matching process is running yet", error: false};
    }
    return {text: target.backend ? "sampling with " + target.backend : "", error: false};
  }

  function chooseTarget(name) {
    if (name === state.target) {
      return;
    }
    state.target = name;
    resetZoom();  // another program's stacks: a zoom there would mean something else
    writeState();
    showTargets();
    loadGraph(false);
  }

  // -- ranges -----------------------------------------------------------------------------

  function seconds(text) {
    const parts = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(text) ?
      text.match(/\d+(?:\.\d+)?(?:ms|s|m|h|d)/g) : null;
    if (!parts) {
      return NaN;
    }
    return parts.reduce((sum, part) => {
      const unit = /ms$/.test(part) ? "ms" : part.slice(-1);
      return sum + parseFloat(part) * UNITS[unit];
    }, 0);
  }

  function duration(total) {
    if (!(total > 0)) {
      return "0s";
    }
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = Math.round(total % 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }

  // The compared (or only) range as [from, until] strings the daemon understands.
  function mainRange() {
    if (state.window === "custom") {
      return [state.from, state.until || "now"];
    }
    return ["now-" + state.window, "now"];
  }

  // The baseline of a comparison as [from, until].
  function baselineRange() {
    if (state.baseline === "ranges") {
      return [state.aFrom, state.aUntil];
    }
    if (state.window === "custom") {
      const from = parseFloat(state.from);
      const until = state.until ? parseFloat(state.until) : Date.now() / 1000;
      return [String(from - (until - from)), String(from)];
    }
    const width = seconds(state.window);
    return ["now-" + 2 * width + "s", "now-" + width + "s"];
  }

  function rangeParams(params) {
    if (state.window === "custom") {
      params.set("from", state.from);
      setIf(params, "until", state.until);
    } else {
      params.set("window", state.window);
    }
    return params;
  }

  function graphUrl() {
    const params = new URLSearchParams({target: state.target});
    if (state.view === "diff" && state.baseline === "ranges") {
      const [bFrom, bUntil] = mainRange();
      params.set("a_from", state.aFrom);
      params.set("a_until", state.aUntil);
      params.set("b_from", bFrom);
      params.set("b_until", bUntil);
    } else {
      rangeParams(params);
    }
    params.set("width", String(graphWidth()));
    return api(state.view === "diff" ? "api/v1/diff" : "api/v1/flamegraph", params);
  }

  function foldedUrl(range) {
    const params = new URLSearchParams({target: state.target});
    if (range) {
      params.set("from", range[0]);
      params.set("until", range[1]);
    } else {
      rangeParams(params);
    }
    return api("api/v1/folded", params);
  }

  function graphWidth() {
    return Math.max(600, Math.min(4000, Math.floor(holder.clientWidth || 1200)));
  }

  // -- the flame graph --------------------------------------------------------------------

  async function loadGraph(quiet) {
    updateDownloads();
    if (!state.target || (quiet && !dueForRefresh())) {
      return;
    }
    const seq = ++graphSeq;
    holder.classList.toggle("loading", !quiet);
    let response;
    let text;
    try {
      response = await fetchApi(graphUrl());
      text = await response.text();
    } catch (error) {
      if (seq === graphSeq) {
        holder.classList.remove("loading");
        showMessage(failure(error));
      }
      return;
    }
    if (seq !== graphSeq) {
      return;
    }
    holder.classList.remove("loading");
    if (!response.ok) {
      showMessage((state.view === "diff" ? "comparison: " : "flame graph: ") +
        response.status + " " + response.statusText + ": " + text.trim());
      if (!quiet) {
        clearGraph();
      }
      return;
    }
    hideMessage();
    if (text !== shownText) {
      install(text);
    }
  }

  // A huge graph can take seconds to inline: then refresh it less often, so that
  // the page spends at most a fifth of its time redrawing.
  function dueForRefresh() {
    return performance.now() - lastInstall >= 5 * installCost;
  }

  function currentSvg() {
    return holder.querySelector("svg");
  }

  function clearGraph() {
    teardown();
    holder.replaceChildren();
    shownText = "";
  }

  // Inline the SVG, run its own script (scripts do not run when parsed as data),
  // and keep the zoom (by the frame's stack, not its position) and the search.
  function install(text) {
    const began = performance.now();
    const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = parsed.documentElement;
    if (!root || root.localName !== "svg" || parsed.getElementsByTagName("parsererror").length) {
      showMessage("the daemon sent a graph this page cannot read");
      return;
    }
    const code = Array.from(root.getElementsByTagName("script")).map((node) => {
      node.remove();
      return node.textContent;
    }).join("\n");
    const old = currentSvg();
    const path = old ? zoomPath(old) : null;
    if (old) {
      dropFromUrl(["x", "y"]);
    }
    teardown();
    const svg = document.adoptNode(root);
    holder.replaceChildren(svg);
    shownText = text;
    if (code) {
      runGraphScript(svg, code);
    }
    if (path && svg.flamegraph) {
      rezoom(svg, path);
    }
    syncSearch();
    holder.dataset.generation = String(parseInt(holder.dataset.generation, 10) + 1);
    lastInstall = performance.now();
    installCost = lastInstall - began;
  }

  // The graph's script listens on window for its keys; remember those listeners
  // so that a replaced graph does not keep answering Ctrl-F.
  function runGraphScript(svg, code) {
    const element = document.createElement("script");
    element.nonce = nonce;
    element.textContent = code;
    const added = [];
    const original = window.addEventListener;
    window.addEventListener = function (type, listener, options) {
      added.push([type, listener, options]);
      return original.call(window, type, listener, options);
    };
    try {
      svg.appendChild(element);
    } finally {
      delete window.addEventListener;
    }
    listeners = added;
  }

  function teardown() {
    listeners.forEach(([type, listener, options]) => {
      window.removeEventListener(type, listener, options);
    });
    listeners = [];
  }

  function framesOf(svg) {
    return Array.from(svg.querySelectorAll("g.fg-f"), (g) => g.flamegraphFrame).filter(Boolean);
  }

  // The names from the root to the zoomed frame, or null when not zoomed.
  function zoomPath(svg) {
    const view = svg.flamegraph ? svg.flamegraph.view() : null;
    if (!view || !view.zoomed) {
      return null;
    }
    const [start, depth] = view.zoomed;
    const slack = parseFloat(svg.getAttribute("data-total")) * 1e-9;
    const frames = framesOf(svg);
    const path = [];
    for (let d = 0; d <= depth; d++) {
      const frame = frames.find((f) => f.depth === d && f.start <= start + slack &&
        f.start + f.width >= start - slack && (d < depth || Math.abs(f.start - start) <= slack));
      if (!frame) {
        return null;
      }
      path.push(frame.name);
    }
    return path;
  }

  // Zoom the new graph on the same stack, or on as much of it as it still has.
  function rezoom(svg, path) {
    const frames = framesOf(svg);
    const slack = parseFloat(svg.getAttribute("data-total")) * 1e-9;
    let low = -Infinity;
    let high = Infinity;
    let best = null;
    for (let d = 1; d < path.length; d++) {
      const found = frames.find((f) => f.depth === d && f.name === path[d] &&
        f.start >= low - slack && f.start + f.width <= high + slack);
      if (!found) {
        break;
      }
      best = found;
      low = found.start;
      high = found.start + found.width;
    }
    if (best) {
      svg.flamegraph.zoom(best.start, best.depth);
    }
  }

  // -- search and zoom controls -----------------------------------------------------------

  function syncSearch() {
    const svg = currentSvg();
    if (svg && svg.flamegraph) {
      const view = svg.flamegraph.view();
      if (document.activeElement !== $("search")) {
        $("search").value = view.search;
      }
      $("ignore-case").checked = view.ignoreCase;
    }
  }

  function search(event) {
    if (event) {
      event.preventDefault();
    }
    const svg = currentSvg();
    if (svg && svg.flamegraph) {
      svg.flamegraph.search($("search").value);
    }
  }

  function toggleCase() {
    const svg = currentSvg();
    const button = svg ? svg.querySelector(".fg-ignorecase") : null;
    if (button && svg.flamegraph.view().ignoreCase !== $("ignore-case").checked) {
      button.dispatchEvent(new MouseEvent("click", {bubbles: true}));
    }
  }

  function resetZoom() {
    const svg = currentSvg();
    if (svg && svg.flamegraph) {
      svg.flamegraph.unzoom();
    }
  }

  // -- downloads --------------------------------------------------------------------------

  function updateDownloads() {
    const name = state.target || "flamed";
    const svgLink = $("download-svg");
    const foldedLink = $("download-folded");
    const baseLink = $("download-baseline");
    svgLink.href = state.target ? graphUrl() : "#";
    svgLink.download = name + (state.view === "diff" ? "-diff.svg" : ".svg");
    foldedLink.href = state.target ? foldedUrl(null) : "#";
    foldedLink.download = name + ".folded.txt";
    foldedLink.textContent = state.view === "diff" ? "folded (compared)" : "folded";
    baseLink.hidden = state.view !== "diff";
    baseLink.href = state.target ? foldedUrl(baselineRange()) : "#";
    baseLink.download = name + "-baseline.folded.txt";
  }

  // With a token, a plain link cannot send the header: fetch, then save the blob.
  async function download(event) {
    const link = event.currentTarget;
    if (!token() || link.getAttribute("href") === "#") {
      return;
    }
    event.preventDefault();
    try {
      const response = await fetchApi(link.href);
      if (!response.ok) {
        showMessage("download: " + await answerText(response));
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      const save = document.createElement("a");
      save.href = url;
      save.download = link.download;
      document.body.appendChild(save);
      save.click();
      save.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      showMessage(failure(error));
    }
  }

  // -- controls ---------------------------------------------------------------------------

  function showControls() {
    document.querySelectorAll("[data-view]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.view === state.view));
    });
    document.querySelectorAll("[data-window]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.window === state.window));
    });
    const diff = state.view === "diff";
    const ranges = diff && state.baseline === "ranges";
    $("baseline-label").hidden = !diff;
    $("baseline").value = state.baseline;
    $("legend").hidden = !diff;
    $("custom").hidden = state.window !== "custom" && !ranges;
    $("range-a").hidden = !ranges;
    $("range-b-label").textContent = ranges ? "compared" : "range";
    $("live").checked = state.live;
    fillRangeInputs();
  }

  function fillRangeInputs() {
    const [from, until] = absolute(mainRange());
    $("b-from").value = localInput(from);
    $("b-until").value = localInput(until);
    const [aFrom, aUntil] = state.aFrom ? [parseFloat(state.aFrom), parseFloat(state.aUntil)]
      : [from - (until - from), from];
    $("a-from").value = localInput(aFrom);
    $("a-until").value = localInput(aUntil);
  }

  // [from, until] strings (unix seconds or now-DURATION) as unix seconds.
  function absolute(range) {
    const now = Date.now() / 1000;
    return range.map((text) => {
      if (text === "now" || !text) {
        return now;
      }
      return text.startsWith("now-") ? now - seconds(text.slice(4)) : parseFloat(text);
    });
  }

  function localInput(unix) {
    if (!isFinite(unix)) {
      return "";
    }
    const date = new Date(Math.round(unix) * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function fromInput(id) {
    const value = $(id).value;
    return value ? String(Math.round(new Date(value).getTime() / 1000)) : "";
  }

  function setView(view) {
    state.view = view;
    changed();
  }

  function setWindow(choice) {
    if (choice === "custom") {
      const [from, until] = absolute(mainRange());
      state.from = String(Math.round(from));
      state.until = String(Math.round(until));
    }
    state.window = choice;
    changed();
  }

  function setBaseline() {
    state.baseline = $("baseline").value;
    if (state.baseline === "ranges" && !state.aFrom) {
      const [from, until] = absolute(mainRange());
      state.aFrom = String(Math.round(from - (until - from)));
      state.aUntil = String(Math.round(from));
    }
    changed();
  }

  function applyCustom(event) {
    event.preventDefault();
    if (state.window === "custom") {
      state.from = fromInput("b-from");
      state.until = fromInput("b-until");
    }
    if (state.view === "diff" && state.baseline === "ranges") {
      state.aFrom = fromInput("a-from");
      state.aUntil = fromInput("a-until");
    }
    changed();
  }

  function changed() {
    writeState();
    showControls();
    loadGraph(false);
  }

  function setLive() {
    state.live = $("live").checked;
    writeState();
  }

  // -- status and messages ----------------------------------------------------------------

  function setStatus(text, bad) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("bad", bad);
  }

  function showMessage(text) {
    const message = $("message");
    message.textContent = text;
    message.hidden = false;
  }

  function hideMessage() {
    $("message").hidden = true;
  }

  // -- wiring -----------------------------------------------------------------------------

  function refresh(quiet) {
    loadTargets();
    if (!quiet || state.live) {
      loadGraph(quiet);
    }
  }

  function tick() {
    if (!document.hidden && $("token-form").hidden) {
      refresh(true);
    }
  }

  function bind() {
    document.querySelectorAll("[data-view]").forEach((button) => {
      button.addEventListener("click", () => setView(button.dataset.view));
    });
    document.querySelectorAll("[data-window]").forEach((button) => {
      button.addEventListener("click", () => setWindow(button.dataset.window));
    });
    $("target").addEventListener("change", () => chooseTarget($("target").value));
    $("baseline").addEventListener("change", setBaseline);
    $("custom").addEventListener("submit", applyCustom);
    $("live").addEventListener("change", setLive);
    $("search-form").addEventListener("submit", search);
    $("search").addEventListener("change", search);
    $("ignore-case").addEventListener("change", toggleCase);
    $("reset-zoom").addEventListener("click", resetZoom);
    $("token-form").addEventListener("submit", saveToken);
    $("token-button").addEventListener("click", () => askToken("Enter the daemon's token."));
    ["download-svg", "download-folded", "download-baseline"].forEach((id) => {
      $(id).addEventListener("click", download);
    });
    holder.addEventListener("click", syncSearch);
    window.addEventListener("keyup", syncSearch);
  }

  function start() {
    bind();
    $("token-button").hidden = !token();
    writeState();
    showControls();
    refresh(false);
    window.setInterval(tick, PERIOD);
  }

  start();
})();
