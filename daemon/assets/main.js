// flamed's viewer, the page: the targets, the timeline, and a range's profile as an icicle or
// flame graph, a top table or a sandwich, alone or against a baseline. Plain script, nothing
// fetched from elsewhere; every URL is relative to this script's folder, so the page works
// under a reverse proxy's path prefix. The state lives in the URL (target, window or
// from/until, view, compare, baseline, zoom, search, sort, fold, tz, ...), so a link
// reproduces what is on screen. Profiles are fetched as JSON (api/v1/profile); a `type`
// (cpu, offcpu, hotcold: both in one) is one more parameter of profileParams().
(function (FV) {
  "use strict";

  const script = document.currentScript;
  const base = new URL("../", script.src);
  const format = FV.format;
  const TOKEN_KEY = "flamed-token";
  const PERIOD = 5000;
  const SEARCH_DELAY = 150;
  const VIEWS = ["icicle", "flame", "table", "sandwich"];
  const TYPES = ["cpu", "offcpu", "hotcold"];
  const TYPE_NAMES = {cpu: "CPU", offcpu: "off-CPU", hotcold: "CPU + off-CPU"};
  const OUR_KEYS = ["target", "type", "window", "from", "until", "view", "compare", "baseline",
    "a_from", "a_until", "live", "zoom", "search", "ignorecase", "fold", "python", "tz", "fn",
    "sort", "order", "drag", "s", "i", "x", "y"];

  const $ = (id) => document.getElementById(id);
  let state = readState();
  let targets = [];
  let loadSeq = 0;
  let timelineSeq = 0;
  let shown = {etags: "", after: null, before: null, meta: null, baseMeta: null};
  let tree = null;
  let stats = null;
  let marks = null;
  let pattern = null;
  let installCost = 0;
  let lastInstall = 0;
  let searchTimer = 0;
  let graph = null;
  let callersGraph = null;
  let calleesGraph = null;
  let topTable = null;
  let timeline = null;

  class Refused extends Error {}

  class Answer extends Error {}  // the daemon's refusal of a request, in its words

  // -- state in the URL -------------------------------------------------------------------

  function readState() {
    const q = new URLSearchParams(window.location.search);
    const from = q.get("from") || "";
    const oldView = q.get("view");
    const view = VIEWS.includes(oldView) ? oldView : "icicle";
    const windowText = q.get("window") || (from ? "custom" : "5m");
    return {
      target: q.get("target") || "",
      type: TYPES.includes(q.get("type")) ? q.get("type") : "cpu",
      window: windowText === "custom" && !from ? "5m" : windowText,
      from: from,
      until: q.get("until") || "",
      view: view,
      graphView: view === "flame" ? "flame" : "icicle",
      compare: q.get("compare") === "1" || oldView === "diff",
      baseline: q.get("baseline") === "ranges" ? "ranges" : "previous",
      aFrom: q.get("a_from") || "",
      aUntil: q.get("a_until") || "",
      live: q.get("live") !== "0",
      zoom: q.get("zoom") ? q.get("zoom").split(";") : [],
      search: q.get("search") || q.get("s") || "",
      ignoreCase: (q.get("ignorecase") || q.get("i")) === "1",
      fold: q.get("fold") !== "0",
      python: q.get("python") === "1",
      utc: q.get("tz") === "utc",
      fn: q.get("fn") || "",
      sort: q.get("sort") || "self",
      descending: q.get("order") !== "asc",
      drag: q.get("drag") === "baseline" ? "baseline" : "range",
    };
  }

  function writeState() {
    const old = new URLSearchParams(window.location.search);
    const q = new URLSearchParams();
    const put = (key, value, skip) => {
      if (value && value !== skip) {
        q.set(key, value);
      }
    };
    put("target", state.target);
    put("type", state.type, "cpu");
    if (state.window !== "custom") {
      q.set("window", state.window);
    }
    put("from", state.from);
    put("until", state.from ? state.until : "");
    put("view", state.view, "icicle");
    if (state.compare) {
      q.set("compare", "1");
      put("baseline", state.baseline, "previous");
      if (state.baseline === "ranges") {
        put("a_from", state.aFrom);
        put("a_until", state.aUntil);
      }
      put("drag", state.drag, "range");
    }
    put("zoom", state.zoom.join(";"));
    put("search", state.search);
    put("ignorecase", state.ignoreCase ? "1" : "");
    put("fold", state.fold ? "" : "0");
    put("python", state.python ? "1" : "");
    put("tz", state.utc ? "utc" : "");
    put("fn", state.view === "sandwich" ? state.fn : "");
    put("sort", state.sort, "self");
    put("order", state.descending ? "" : "asc");
    put("live", state.live ? "" : "0");
    old.forEach((value, key) => {
      if (!OUR_KEYS.includes(key)) {
        q.set(key, value);
      }
    });
    const query = q.toString();
    const url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
    window.history.replaceState(window.history.state, "", url);
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
    let response = await fetch(url, {headers: headers, credentials: "same-origin"});
    if (response.status === 503) {  // every render slot busy: once more, a second later
      await new Promise((resolve) => window.setTimeout(resolve, 1000));
      response = await fetch(url, {headers: headers, credentials: "same-origin"});
    }
    if (response.status === 401) {
      const why = given ? "The daemon refused this bearer token (401 Unauthorized)."
        : "This daemon needs a bearer token.";
      askToken(why);
      throw new Refused(why);
    }
    return response;
  }

  function failure(error) {
    if (error instanceof Refused || error instanceof FV.BadProfile) {
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
    shown.etags = "";
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
    setStatus("updated " + format.clock(Date.now() / 1000, state.utc, true) + " · " +
      list.length + " target" + (list.length === 1 ? "" : "s"), false);
    if (!state.target && list.length) {
      chooseTarget(list[0].name);
    } else if (!list.length) {
      showMessage("No targets are configured: add [[targets]] to the daemon's config.");
    }
  }

  function showTargets() {
    const body = $("targets").tBodies[0];
    body.replaceChildren(...targets.map(targetRow));
    showTypes();
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

  // The profile types the chosen target has; a type it lacks falls back to cpu.
  function showTypes() {
    const chosen = targets.find((t) => t.name === state.target);
    const types = (chosen && chosen.types) || ["cpu"];
    const offered = types.includes("offcpu") && types.includes("cpu")
      ? [...types, "hotcold"] : types;
    const select = $("type");
    const same = select.options.length === offered.length &&
      offered.every((type, n) => select.options[n].value === type);
    if (!same) {
      select.replaceChildren(...offered.map((type) => new Option(TYPE_NAMES[type], type)));
    }
    $("type-label").hidden = offered.length < 2;
    if (chosen && !offered.includes(state.type)) {
      state.type = "cpu";
      writeState();
    }
    select.value = state.type;
  }

  function chooseType(type) {
    if (type === state.type) {
      return;
    }
    state.type = type;
    state.zoom = [];  // other stacks
    shown.etags = "";
    changed();
  }

  function targetRow(target) {
    const row = document.createElement("tr");
    row.dataset.target = target.name;
    row.tabIndex = 0;
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
      [note.text, "note" + (note.error ? " note-error" : "")],
    ].forEach(([text, cls]) => row.appendChild(cell(text, cls)));
    row.addEventListener("click", () => chooseTarget(target.name));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        chooseTarget(target.name);
      }
    });
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
    const list = pids.slice(0, 6).join(", ");
    return pids.length > 6 ? list + " and " + (pids.length - 6) + " more" : list;
  }

  function held(target) {
    if (target.oldest == null || target.newest == null) {
      return "nothing yet";
    }
    return format.duration(target.newest - target.oldest);
  }

  // The CPU sampler's note, and the off-CPU sampler's where it has one (it fails alone).
  function targetNote(target) {
    const note = cpuNote(target);
    const off = target.offcpu;
    if (off && off.state === "error" && off.last_error) {
      return {text: (note.text ? note.text + "; " : "") + off.last_error, error: true};
    }
    if (off && off.state === "running" && !note.error) {
      return {text: note.text + (note.text ? ", " : "") + "off CPU with " + off.backend,
        error: false};
    }
    return note;
  }

  function cpuNote(target) {
    if (target.last_error) {
      const at = target.last_error_time
        ? " (" + format.clock(target.last_error_time, state.utc, true) + ")" : "";
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
    state.zoom = [];  // another program's stacks: a zoom there would mean something else
    shown.etags = "";
    showTargets();
    changed();
  }

  // -- ranges -----------------------------------------------------------------------------

  function now() {
    return Date.now() / 1000;
  }

  // The graph's range as the daemon's [from, until] strings, or null for the last `window`.
  function chosenRange() {
    if (state.from) {
      return [state.from, state.until || "now"];
    }
    return null;
  }

  // The graph's range in unix seconds.
  function mainSpan() {
    const chosen = chosenRange();
    if (chosen) {
      return [parseFloat(chosen[0]), chosen[1] === "now" ? now() : parseFloat(chosen[1])];
    }
    return [now() - format.seconds(state.window), now()];
  }

  // The baseline as [from, until] strings: the chosen one, or as long just before the range.
  function baselineRange() {
    if (state.baseline === "ranges" && state.aFrom && state.aUntil) {
      return [state.aFrom, state.aUntil];
    }
    if (!chosenRange()) {
      const width = format.seconds(state.window);
      return ["now-" + 2 * width + "s", "now-" + width + "s"];
    }
    const [from, until] = mainSpan();
    return [String(Math.round(from - (until - from))), String(Math.round(from))];
  }

  // What the timeline shows: the window up to now, widened to hold the chosen ranges.
  function timelineSpan() {
    let [from, until] = state.window === "custom" ? mainSpan()
      : [now() - format.seconds(state.window), now()];
    const spans = [mainSpan()];
    if (state.compare) {
      spans.push(baselineRange().map(absolute));
    }
    spans.forEach(([a, b]) => {
      from = Math.min(from, a);
      until = Math.max(until, b);
    });
    return [from, until];
  }

  function absolute(text) {
    return text.startsWith("now-") ? now() - format.seconds(text.slice(4)) : parseFloat(text);
  }

  // The request parameters of a profile endpoint for a range (null: the last `window`).
  function profileParams(range) {
    const params = new URLSearchParams({target: state.target});
    if (state.type !== "cpu") {
      params.set("type", state.type);
    }
    if (state.python) {
      params.set("python", "1");
    }
    if (range) {
      params.set("from", range[0]);
      if (range[1] !== "now") {
        params.set("until", range[1]);
      }
    } else {
      params.set("window", state.window);
    }
    return params;
  }

  // -- loading profiles -----------------------------------------------------------------------

  async function loadProfiles(quiet) {
    updateDownloads();
    if (!state.target || (quiet && !dueForRefresh())) {
      return;
    }
    const seq = ++loadSeq;
    $("views").classList.toggle("loading", !quiet);
    const ranges = [chosenRange()];
    if (state.compare) {
      ranges.push(baselineRange());
    }
    const answers = [];
    try {
      for (const range of ranges) {  // one after the other: render slots are few
        const response = await fetchApi(api("api/v1/profile", profileParams(range)));
        if (!response.ok) {
          throw new Answer((range === ranges[1] ? "baseline: " : "profile: ") +
            await answerText(response));
        }
        answers.push(response);
      }
    } catch (error) {
      if (seq === loadSeq) {
        $("views").classList.remove("loading");
        $("views").hidden = !quiet || $("views").hidden;
        showMessage(error instanceof Answer ? error.message : failure(error));
      }
      return;
    }
    if (seq !== loadSeq) {
      return;
    }
    $("views").classList.remove("loading");
    const etags = answers.map((r) => r.headers.get("ETag") || Math.random()).join(" ");
    if (etags === shown.etags && tree) {
      return;  // unchanged since the last answer
    }
    try {
      const docs = await Promise.all(answers.map((r) => r.json()));
      install(docs, etags);
      hideMessage();
      $("views").hidden = false;
    } catch (error) {
      showMessage(failure(error));
    }
  }

  // A huge profile can take a while to install: then refresh it less often, so that the page
  // spends at most a fifth of its time on it.
  function dueForRefresh() {
    return performance.now() - lastInstall >= 5 * installCost;
  }

  function install(docs, etags) {
    const began = performance.now();
    const same = !!shown.meta && shown.meta.target === docs[0].target;
    shown = {
      etags: etags,
      after: FV.fromJson(docs[0]),
      before: docs[1] ? FV.fromJson(docs[1]) : null,
      meta: docs[0],
      baseMeta: docs[1] || null,
    };
    const python = docs.some((doc) => doc.names.some((name) => name.startsWith("py::")));
    $("python-label").hidden = !python && !state.python;
    rebuild(same);
    lastInstall = performance.now();
    installCost = lastInstall - began;
  }

  // The shown tree from the fetched ones: runs folded or not, compared or not.
  function rebuild(keep) {
    if (!shown.after) {
      return;
    }
    const fold = (t) => (t && state.fold ? FV.foldRuns(t) : t);
    const after = fold(shown.after);
    const before = fold(shown.before);
    tree = before ? FV.compare(after, before) : after;
    stats = null;
    updateMarks();
    showSubtitle();
    render(keep);
    const holder = $("graph");
    holder.dataset.generation = String(parseInt(holder.dataset.generation, 10) + 1);
  }

  function functionStats() {
    if (!stats && tree) {
      stats = FV.functionStats(tree);
    }
    return stats;
  }

  // -- the views --------------------------------------------------------------------------------

  function render(keep) {
    if (!tree) {
      return;
    }
    if (state.view === "icicle" || state.view === "flame") {
      showGraph(keep);
    } else if (state.view === "table") {
      showTable();
    } else {
      showSandwich();
    }
  }

  // As tall as fits on the first screen below the controls (a scrolling area past that).
  function maxGraphHeight() {
    const top = $("views").getBoundingClientRect().top + window.scrollY;
    return Math.max(240, Math.min(1200, window.innerHeight - top - 48));
  }

  function showGraph(keep) {
    const first = !graph;
    if (first) {
      graph = new FV.Graph($("graph"), {
        orientation: state.view,
        label: "flame graph",
        describe: describe,
        maxHeight: maxGraphHeight,
        type: shownType,
        onZoom: (node) => {
          state.zoom = FV.pathOf(tree, node);
          writeState();
          showMatched();
        },
        onCursor: (node) => showDetails(node, tree),
      });
    }
    graph.setOrientation(state.view);
    graph.setTree(tree, keep && !first);
    const wanted = FV.findPath(tree, state.zoom);  // the URL's zoom, or as much of it as exists
    if (graph.zoom !== wanted) {
      graph.zoomTo(wanted);
    }
    graph.setMarks(marks);
  }

  function showTable() {
    if (!topTable) {
      topTable = new FV.TopTable($("top"), $("top-note"), {
        onFocus: focusFunction,
        onSandwich: openSandwich,
        onSort: (key, descending) => {
          state.sort = key;
          state.descending = descending;
          writeState();
          showTable();
        },
      });
    }
    topTable.show(tree, functionStats(), pattern, {key: state.sort, descending: state.descending});
  }

  function showSandwich() {
    const name = sandwichName();
    $("sandwich-name").textContent = name < 0 ? "(no samples)" : tree.names[name];
    if (name < 0) {
      return;
    }
    if (!callersGraph) {
      const options = (label, orientation) => ({
        orientation: orientation,
        label: label,
        byTotal: orientation === "flame",
        describe: describe,
        type: shownType,
        maxHeight: () => Math.max(160, Math.floor(maxGraphHeight() / 2)),
        onCursor: (node) => showDetails(node, orientation === "flame" ? callersGraph.tree
          : calleesGraph.tree),
      });
      callersGraph = new FV.Graph($("callers"), options("callers", "flame"));
      calleesGraph = new FV.Graph($("callees"), options("callees", "icicle"));
    }
    callersGraph.setTree(FV.callers(tree, name), false);
    calleesGraph.setTree(FV.callees(tree, name), false);
    callersGraph.setMarks(marks);
    calleesGraph.setMarks(marks);
  }

  // The sandwich's function: the chosen one, else the one with the most samples of its own.
  function sandwichName() {
    const index = tree.names.indexOf(state.fn);
    if (state.fn && index >= 0 && index !== tree.names.length - 1) {
      return index;
    }
    const all = functionStats();
    let best = -1;
    all.names.forEach((name) => {
      if (best < 0 || all.self[name] > all.self[best]) {
        best = name;
      }
    });
    return best;
  }

  function openSandwich(name) {
    state.fn = tree.names[name];
    setView("sandwich");
  }

  // The table's click: show the function in the graph, its frames highlighted, zoomed on the
  // widest.
  function focusFunction(name) {
    state.search = "^" + tree.names[name].replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "$";
    state.ignoreCase = false;
    $("search").value = state.search;
    $("ignore-case").checked = false;
    state.view = state.graphView;
    updateMarks();
    showControls();
    render(true);
    const node = FV.widest(tree, name);
    if (node > 0) {
      graph.zoomTo(node);
      graph.setCursor(node);
      graph.canvas.focus();
    }
    writeState();
  }

  // The tooltip's lines for a frame of any of the graphs.
  function describe(node, shownTree) {
    const t = shownTree;
    const whole = tree.total[0];
    const lines = [labelOf(t, node)];
    lines.push("total " + amount(t.total[node]) + " (" + format.percent(t.total[node],
      whole) + "), self " + format.count(t.self[node]) + " (" + format.percent(t.self[node],
      whole) + ")");
    if (t.baseSelf) {
      const delta = t.self[node] - t.baseSelf[node];
      lines.push("baseline: total " + format.count(t.baseTotal[node]) + ", self " +
        format.count(t.baseSelf[node]) + "; self " + (delta ? format.signed(delta) : "unchanged"));
    }
    if (t.runMax[node]) {
      lines.push("a run of identical frames, folded into one (untick \"fold runs\" to see it)");
    }
    return lines;
  }

  function labelOf(t, node) {
    const text = FV.shownName(t.names[t.name[node]]);
    const high = t.runMax[node];
    return high ? text + " ×" + (t.runMin[node] === high ? high : t.runMin[node] + "–" + high)
      : text;
  }

  function showDetails(node, shownTree) {
    if (!shownTree || node < 0) {
      return;
    }
    $("details-text").textContent = describe(node, shownTree).join(" · ");
    const button = $("details-sandwich");
    button.hidden = node === 0 && shownTree === tree;
    button.dataset.name = String(shownTree.name[node]);
  }

  // The type of the profile shown (its counts: samples, or microseconds on and off CPU).
  function shownType() {
    return shown.meta && shown.meta.type ? shown.meta.type : "cpu";
  }

  function amount(value) {
    return shownType() === "cpu" ? format.samples(value) : format.count(value) + " µs";
  }

  function showSubtitle() {
    const meta = shown.meta;
    const range = (m) => (m && m.start != null
      ? format.range(m.start, m.end, state.utc) + ", " + amount(m.samples || 0)
      : "no samples in this range yet");
    let text = state.target + ": " + range(meta);
    if (shown.baseMeta) {
      text += "; against " + range(shown.baseMeta);
    }
    $("subtitle").textContent = text;
  }

  // -- search -----------------------------------------------------------------------------

  function updateMarks() {
    try {
      pattern = FV.matcher(state.search, state.ignoreCase);
      $("search").setCustomValidity("");
    } catch (error) {
      pattern = null;
      $("search").setCustomValidity("not a regular expression");
      $("matched").textContent = "not a regular expression: " + error.message;
      marks = null;
      return;
    }
    marks = tree && pattern ? FV.matchNames(tree.names, pattern) : null;
    showMatched();
  }

  function showMatched() {
    if (!pattern || !tree || !marks) {
      $("matched").textContent = "";
      return;
    }
    const sum = FV.matchedTotal(tree, marks);
    $("matched").textContent = "matched " + format.percent(sum, tree.total[0]) + " (" +
      amount(sum) + ")";
  }

  function search(event) {
    if (event) {
      event.preventDefault();
    }
    window.clearTimeout(searchTimer);
    state.search = $("search").value;
    state.ignoreCase = $("ignore-case").checked;
    writeState();
    updateMarks();
    [graph, callersGraph, calleesGraph].forEach((g) => g && g.setMarks(marks));
    if (state.view === "table" && tree) {
      showTable();
    }
  }

  function searchSoon() {
    window.clearTimeout(searchTimer);
    searchTimer = window.setTimeout(search, SEARCH_DELAY);
  }

  function resetZoom() {
    if (graph && tree) {
      graph.zoomTo(0);
    }
    state.zoom = [];
    writeState();
  }

  // -- the timeline -------------------------------------------------------------------------

  async function loadTimeline() {
    if (!state.target) {
      return;
    }
    const seq = ++timelineSeq;
    const [from, until] = timelineSpan();
    const params = new URLSearchParams({target: state.target});
    if (state.type === "offcpu") {  // a hot/cold graph's timeline is its CPU samples'
      params.set("type", "offcpu");
    }
    params.set("from", String(Math.floor(from)));
    params.set("until", String(Math.ceil(until)));
    let body;
    try {
      const response = await fetchApi(api("api/v1/timeline", params));
      if (!response.ok) {
        return;
      }
      body = await response.json();
    } catch (error) {
      return;
    }
    if (seq === timelineSeq) {
      showTimeline(body.buckets, from, until);
    }
  }

  function showTimeline(buckets, from, until) {
    const ranges = {range: state.from ? mainSpan() : null, baseline: null};
    if (state.compare) {
      ranges.baseline = baselineRange().map(absolute);
    }
    timeline.set(Object.assign({buckets: buckets, start: from, end: until,
      mode: state.compare ? state.drag : "range"}, ranges));
    const rate = state.type === "offcpu" ? "µs off CPU per second, " : "samples per second, ";
    $("timeline-caption").textContent = rate + format.range(from, until, state.utc) +
      "; drag across it (or Shift+arrow keys) to choose a range";
    $("clear-range").hidden = !state.from || state.window === "custom";
  }

  // A drag on the timeline: the range (or the baseline) becomes the dragged one.
  function timelineSelected(which, from, until) {
    if (which === "baseline") {
      if (from === null) {
        state.baseline = "previous";
      } else {
        state.baseline = "ranges";
        state.aFrom = String(from);
        state.aUntil = String(until);
      }
    } else if (from === null) {
      if (state.window === "custom") {
        return;
      }
      state.from = "";
      state.until = "";
    } else {
      state.from = String(from);
      state.until = String(until);
    }
    state.zoom = [];
    changed();
  }

  // -- downloads --------------------------------------------------------------------------

  function updateDownloads() {
    const name = state.target || "flamed";
    const main = chosenRange();
    const link = (id, path, params, file) => {
      const element = $(id);
      element.href = state.target ? api(path, params) : "#";
      element.download = file;
    };
    const svg = profileParams(main);
    if (state.compare) {
      const [aFrom, aUntil] = baselineRange().map((t) => String(Math.round(absolute(t))));
      const [bFrom, bUntil] = mainSpan().map((t) => String(Math.round(t)));
      svg.delete("window");
      svg.delete("from");
      svg.delete("until");
      Object.entries({a_from: aFrom, a_until: aUntil, b_from: bFrom, b_until: bUntil})
        .forEach(([key, value]) => svg.set(key, value));
    }
    if (state.view !== "flame") {
      svg.set("inverted", "true");
    }
    link("download-svg", state.compare ? "api/v1/diff" : "api/v1/flamegraph", svg,
      name + (state.compare ? "-diff.svg" : ".svg"));
    link("download-folded", "api/v1/folded", profileParams(main), name + ".folded.txt");
    link("download-baseline", "api/v1/folded", profileParams(baselineRange()),
      name + "-baseline.folded.txt");
    link("download-pprof", "api/v1/pprof", profileParams(main), name + ".pb.gz");
    link("download-speedscope", "api/v1/speedscope", profileParams(main),
      name + ".speedscope.json");
    $("download-baseline").hidden = !state.compare;
    $("download-folded").textContent = state.compare ? "folded (compared)" : "folded";
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
    const press = (selector, attribute, value) => {
      document.querySelectorAll(selector).forEach((button) => {
        button.setAttribute("aria-pressed", String(button.dataset[attribute] === value));
      });
    };
    press("[data-view]", "view", state.view);
    press("[data-window]", "window", state.window);
    press("[data-drag]", "drag", state.drag);
    const ranges = state.compare && state.baseline === "ranges";
    $("compare").checked = state.compare;
    $("baseline-label").hidden = !state.compare;
    $("baseline").value = state.baseline;
    $("legend").hidden = !state.compare;
    $("drag-mode").hidden = !state.compare;
    $("custom").hidden = state.window !== "custom" && !ranges;
    $("range-a").hidden = !ranges;
    $("range-b-label").textContent = ranges ? "compared" : "range";
    $("live").checked = state.live;
    $("fold").checked = state.fold;
    $("python").checked = state.python;
    $("search").value = state.search;
    $("ignore-case").checked = state.ignoreCase;
    $("graph").hidden = state.view !== "icicle" && state.view !== "flame";
    $("table-view").hidden = state.view !== "table";
    $("sandwich-view").hidden = state.view !== "sandwich";
    $("reset-zoom").hidden = $("graph").hidden;
    $("zone").textContent = "times in " + format.zoneName(state.utc);
    $("zone-hint").textContent = "times in " + format.zoneName(state.utc);
    fillRangeInputs();
  }

  function fillRangeInputs() {
    const [from, until] = mainSpan();
    $("b-from").value = format.inputValue(from, state.utc);
    $("b-until").value = format.inputValue(until, state.utc);
    const [aFrom, aUntil] = baselineRange().map(absolute);
    $("a-from").value = format.inputValue(aFrom, state.utc);
    $("a-until").value = format.inputValue(aUntil, state.utc);
  }

  function setView(view) {
    state.view = view;
    if (view === "icicle" || view === "flame") {
      state.graphView = view;
    }
    writeState();
    showControls();
    render(true);
  }

  function setWindow(choice) {
    if (choice === "custom") {
      const [from, until] = mainSpan();
      state.from = String(Math.round(from));
      state.until = String(Math.round(until));
    } else {
      state.from = "";
      state.until = "";
    }
    state.window = choice;
    changed();
  }

  function setCompare() {
    state.compare = $("compare").checked;
    changed();
  }

  function setBaseline() {
    state.baseline = $("baseline").value;
    if (state.baseline === "ranges" && !state.aFrom) {
      const [from, until] = mainSpan();
      state.aFrom = String(Math.round(from - (until - from)));
      state.aUntil = String(Math.round(from));
    }
    changed();
  }

  function applyCustom(event) {
    event.preventDefault();
    if (state.window === "custom") {
      state.from = String(format.fromInput($("b-from").value, state.utc));
      state.until = String(format.fromInput($("b-until").value, state.utc));
    }
    if (state.compare && state.baseline === "ranges") {
      state.aFrom = String(format.fromInput($("a-from").value, state.utc));
      state.aUntil = String(format.fromInput($("a-until").value, state.utc));
    }
    changed();
  }

  function changed() {
    writeState();
    showControls();
    loadTimeline();
    loadProfiles(false);
  }

  function setLive() {
    state.live = $("live").checked;
    writeState();
  }

  function setFold() {
    state.fold = $("fold").checked;
    writeState();
    rebuild(true);
  }

  // The Python view is the daemon's (python=1): the graph's names change, so zoom starts over.
  function setPython() {
    state.python = $("python").checked;
    state.zoom = [];
    changed();
  }

  function toggleZone() {
    state.utc = !state.utc;
    writeState();
    showControls();
    if (shown.meta) {
      showSubtitle();
    }
    loadTargets();
    loadTimeline();
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

  // -- keys -------------------------------------------------------------------------------------

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName));
  }

  function globalKey(event) {
    if (event.defaultPrevented) {
      return;
    }
    const find = (event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "f";
    if (find || (event.key === "/" && !typing(event.target))) {
      event.preventDefault();
      $("search").focus();
      $("search").select();
    } else if (event.key === "Escape") {
      if (event.target === $("search")) {
        $("search").value = "";
        search();
      } else if (state.zoom.length) {
        resetZoom();
      } else if (state.search) {
        $("search").value = "";
        search();
      }
    }
  }

  // -- wiring -----------------------------------------------------------------------------

  function refresh(quiet) {
    loadTargets();
    loadTimeline();
    if (!quiet || state.live) {
      loadProfiles(quiet);
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
    document.querySelectorAll("[data-drag]").forEach((button) => {
      button.addEventListener("click", () => {
        state.drag = button.dataset.drag;
        changed();
      });
    });
    $("target").addEventListener("change", () => chooseTarget($("target").value));
    $("type").addEventListener("change", () => chooseType($("type").value));
    $("compare").addEventListener("change", setCompare);
    $("baseline").addEventListener("change", setBaseline);
    $("custom").addEventListener("submit", applyCustom);
    $("live").addEventListener("change", setLive);
    $("fold").addEventListener("change", setFold);
    $("python").addEventListener("change", setPython);
    $("search-form").addEventListener("submit", search);
    $("search").addEventListener("input", searchSoon);
    $("ignore-case").addEventListener("change", search);
    $("reset-zoom").addEventListener("click", resetZoom);
    $("zone").addEventListener("click", toggleZone);
    $("clear-range").addEventListener("click", () => timelineSelected("range", null, null));
    $("details-sandwich").addEventListener("click", (event) => {
      openSandwich(parseInt(event.currentTarget.dataset.name, 10));
    });
    $("token-form").addEventListener("submit", saveToken);
    $("token-button").addEventListener("click", () => askToken("Enter the daemon's token."));
    ["download-svg", "download-folded", "download-baseline", "download-pprof",
      "download-speedscope"].forEach((id) => {
      $(id).addEventListener("click", download);
    });
    window.addEventListener("keydown", globalKey);
    timeline = new FV.Timeline($("timeline"), {
      onSelect: timelineSelected,
      utc: () => state.utc,
      say: (text) => {
        $("timeline-keys").textContent = text;
      },
    });
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
})(window.flamedViewer = window.flamedViewer || {});
