// flamed's flame graph viewer: details on hover, click to zoom, regex search.
// Works on the <svg class="flamegraph"> that holds this script, whether the SVG
// is opened on its own or inlined in a page. Frames are <g class="fg-f"> with
// data-depth, data-start and data-width in samples, so no pixel arithmetic is
// needed to know who contains whom. The view lives in the URL: ?x=START&y=DEPTH
// for the zoomed frame, s=REGEX for the search, i=1 to ignore case.
// A page that hosts the SVG may drive it through svg.flamegraph (zoom(start,
// depth), unzoom(), search(regex), view()) and read g.flamegraphFrame; the
// daemon's web page does, so those names are a contract.
(function () {
  "use strict";

  var script = document.currentScript;
  var svg = (script && script.closest && script.closest("svg.flamegraph")) ||
    document.querySelector("svg.flamegraph");
  if (!svg || svg.flamegraph) {
    return;
  }

  var total = parseFloat(svg.getAttribute("data-total"));
  var xpad = parseFloat(svg.getAttribute("data-xpad"));
  var charWidth = parseFloat(svg.getAttribute("data-char-width"));
  var nameType = svg.getAttribute("data-name-type") || "";
  var cutLeft = svg.getAttribute("data-truncate") === "left";
  // The viewBox, not the width attribute: a page may size the SVG as it likes.
  var fullWidth = svg.viewBox.baseVal.width - 2 * xpad;
  var slack = total * 1e-9;

  function control(name) {
    return svg.querySelector(".fg-" + name);
  }
  var details = control("details");
  var unzoomButton = control("unzoom");
  var searchButton = control("search");
  var caseButton = control("ignorecase");
  var matchedText = control("matched");

  var frames = [];
  var groups = svg.querySelectorAll("g.fg-f");
  for (var i = 0; i < groups.length; i++) {
    frames.push(readFrame(groups[i]));
  }

  function readFrame(group) {
    var title = group.querySelector("title").textContent;
    var depth = parseInt(group.getAttribute("data-depth"), 10);
    var cut = title.lastIndexOf(" (");
    var frame = {
      group: group,
      rect: group.querySelector("rect"),
      label: group.querySelector("text"),
      title: title,
      name: depth === 0 ? "all" :
        (group.getAttribute("data-name") || (cut >= 0 ? title.substring(0, cut) : title)),
      depth: depth,
      start: parseFloat(group.getAttribute("data-start")),
      width: parseFloat(group.getAttribute("data-width"))
    };
    group.flamegraphFrame = frame;
    return frame;
  }

  var zoomed = null;
  var term = "";
  var ignoreCase = false;

  // Drawing.

  function fitLabel(name, pixels) {
    var chars = Math.floor(pixels / charWidth);
    if (chars < 3) {
      return "";
    }
    if (chars >= name.length) {
      return name;
    }
    if (cutLeft) {
      return ".." + name.substring(name.length - chars + 2);
    }
    return name.substring(0, chars - 2) + "..";
  }

  function place(frame, x, width) {
    frame.rect.setAttribute("x", x.toFixed(1));
    frame.rect.setAttribute("width", width.toFixed(1));
    frame.label.setAttribute("x", (x + 3).toFixed(2));
    frame.label.textContent = fitLabel(frame.name, width);
  }

  function toggle(element, name, on) {
    if (on) {
      element.classList.add(name);
    } else {
      element.classList.remove(name);
    }
  }

  function setClass(frame, name, on) {
    toggle(frame.group, name, on);
  }

  // Zoom: the frame fills the width, frames above it scale with it, its
  // ancestors stay (shaded, full width), everything else is hidden.

  function zoom(target) {
    if (!target || target.depth === 0) {
      unzoom();
      return;
    }
    zoomed = target;
    var low = target.start;
    var high = target.start + target.width;
    var ratio = fullWidth / target.width;
    frames.forEach(function (frame) {
      var end = frame.start + frame.width;
      var ancestor = frame.depth < target.depth && frame.start <= low + slack && end >= high - slack;
      var inside = frame.depth >= target.depth && frame.start >= low - slack && end <= high + slack;
      setClass(frame, "fg-parent", ancestor);
      setClass(frame, "fg-hide", !ancestor && !inside);
      if (ancestor) {
        place(frame, xpad, fullWidth);
      } else if (inside) {
        place(frame, xpad + (frame.start - low) * ratio, frame.width * ratio);
      }
    });
    unzoomButton.classList.remove("fg-hide");
    refresh();
  }

  function unzoom() {
    zoomed = null;
    var ratio = fullWidth / total;
    frames.forEach(function (frame) {
      setClass(frame, "fg-parent", false);
      setClass(frame, "fg-hide", false);
      place(frame, xpad + frame.start * ratio, frame.width * ratio);
    });
    unzoomButton.classList.add("fg-hide");
    refresh();
  }

  function findFrame(start, depth) {
    for (var i = 0; i < frames.length; i++) {
      var frame = frames[i];
      if (frame.depth === depth && Math.abs(frame.start - start) <= slack) {
        return frame;
      }
    }
    return null;
  }

  // Search: frames whose name matches are filled with the search colour; the
  // matched share counts each sample once, however many matching frames
  // stack above it.

  function search(newTerm) {
    term = newTerm || "";
    var pattern = null;
    if (term) {
      try {
        pattern = new RegExp(term, ignoreCase ? "i" : "");
      } catch (error) {
        pattern = null;
        matchedText.textContent = "Bad regular expression";
      }
    }
    frames.forEach(function (frame) {
      setClass(frame, "fg-match", pattern !== null && pattern.test(frame.name));
    });
    searchButton.textContent = term ? "Reset Search" : "Search";
    toggle(searchButton, "fg-show", !!term);
    if (pattern) {
      showMatched();
    } else if (!term) {
      matchedText.textContent = " ";
    }
    saveView();
  }

  function showMatched() {
    var low = zoomed ? zoomed.start : 0;
    var high = zoomed ? zoomed.start + zoomed.width : total;
    var spans = [];
    frames.forEach(function (frame) {
      var classes = frame.group.classList;
      if (classes.contains("fg-match") && !classes.contains("fg-hide")) {
        spans.push([Math.max(frame.start, low), Math.min(frame.start + frame.width, high)]);
      }
    });
    spans.sort(function (a, b) {
      return a[0] - b[0] || b[1] - a[1];
    });
    var covered = 0;
    var reach = low;
    spans.forEach(function (span) {
      var from = Math.max(span[0], reach);
      if (span[1] > from) {
        covered += span[1] - from;
        reach = span[1];
      }
    });
    var share = high > low ? 100 * covered / (high - low) : 0;
    var shown = Math.abs(share - 100) < 1e-9 ? "100" : share.toFixed(1);
    matchedText.textContent = "Matched: " + shown + "%";
  }

  function askSearch() {
    var how = ignoreCase ? "ignoring case" : "case-sensitive";
    var answer = window.prompt("Search frames for a regular expression (" + how + "):", term);
    if (answer !== null) {
      search(answer);
    }
  }

  function toggleCase() {
    ignoreCase = !ignoreCase;
    toggle(caseButton, "fg-show", ignoreCase);
    search(term);
  }

  function refresh() {
    if (term) {
      search(term);
    } else {
      saveView();
    }
  }

  // The view in the URL, so that a link reproduces it.

  function saveView() {
    try {
      var params = new URLSearchParams(window.location.search);
      if (zoomed) {
        params.set("x", String(zoomed.start));
        params.set("y", String(zoomed.depth));
      } else {
        params.delete("x");
        params.delete("y");
      }
      setParam(params, "s", term);
      setParam(params, "i", ignoreCase ? "1" : "");
      var query = params.toString();
      var url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
      window.history.replaceState(window.history.state, "", url);
    } catch (error) {
      // file:// pages and sandboxed frames may refuse; the view still works.
    }
  }

  function setParam(params, key, value) {
    if (value) {
      params.set(key, value);
    } else {
      params.delete(key);
    }
  }

  function loadView() {
    var params = new URLSearchParams(window.location.search);
    if (params.get("i") === "1") {
      ignoreCase = true;
      toggle(caseButton, "fg-show", true);
    }
    if (params.has("x") && params.has("y")) {
      var target = findFrame(parseFloat(params.get("x")), parseInt(params.get("y"), 10));
      if (target) {
        zoom(target);
      }
    }
    var initial = params.has("s") ? params.get("s") : svg.getAttribute("data-search");
    if (initial) {
      search(initial);
    }
  }

  // Events.

  function frameOf(node) {
    var group = node && node.closest ? node.closest("g.fg-f") : null;
    return group ? group.flamegraphFrame : null;
  }

  svg.addEventListener("click", function (event) {
    var node = event.target;
    if (node === unzoomButton) {
      unzoom();
    } else if (node === searchButton) {
      if (term) {
        search("");
      } else {
        askSearch();
      }
    } else if (node === caseButton) {
      toggleCase();
    } else {
      var frame = frameOf(node);
      if (frame) {
        zoom(frame);
      }
    }
  });

  svg.addEventListener("mouseover", function (event) {
    var frame = frameOf(event.target);
    if (frame) {
      details.textContent = nameType + " " + frame.title;
    }
  });

  svg.addEventListener("mouseout", function (event) {
    if (frameOf(event.target)) {
      details.textContent = " ";
    }
  });

  window.addEventListener("keydown", function (event) {
    var key = event.key;
    if (key === "F3" || ((event.ctrlKey || event.metaKey) && (key === "f" || key === "F"))) {
      event.preventDefault();
      askSearch();
    } else if ((event.ctrlKey || event.metaKey) && (key === "i" || key === "I")) {
      event.preventDefault();
      toggleCase();
    } else if (key === "Escape" && zoomed) {
      unzoom();
    }
  });

  svg.flamegraph = {
    zoom: function (start, depth) {
      zoom(findFrame(start, depth));
    },
    unzoom: unzoom,
    search: search,
    view: function () {
      return {zoomed: zoomed ? [zoomed.start, zoomed.depth] : null, search: term, ignoreCase: ignoreCase};
    }
  };

  // Fluid width (data-fluid): the graph takes the width it is given and is laid out again.

  function setX(name, x) {
    var element = control(name);
    if (element) {
      element.setAttribute("x", String(x));
    }
  }

  function fit() {
    var width = svg.getBoundingClientRect().width;
    if (!(width > 2 * xpad + 1)) {
      return;
    }
    svg.setAttribute("viewBox", "0 0 " + width + " " + svg.viewBox.baseVal.height);
    fullWidth = width - 2 * xpad;
    setX("title", width / 2);
    setX("subtitle", width / 2);
    setX("search", width - xpad - 100);
    setX("ignorecase", width - xpad - 16);
    setX("matched", width - xpad - 100);
    var backdrop = control("background");
    if (backdrop) {
      backdrop.setAttribute("width", String(width));
    }
    if (zoomed) {
      zoom(zoomed);
    } else {
      unzoom();
    }
  }

  if (svg.getAttribute("data-fluid") === "1") {
    svg.setAttribute("width", "100%");
    fit();
    window.addEventListener("resize", fit);
  }

  loadView();
})();
