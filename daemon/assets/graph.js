// flamed's viewer, the graph: a Tree (profile.js) drawn on a canvas as an icicle (root on
// top) or a flame graph (root at the bottom), in a scrollable area of bounded height. Only
// frames at least MIN_PX wide are laid out and only those in view are drawn, so a profile of
// 50,000 stacks stays quick. A click zooms (the ancestors stay, shaded), hovering shows a
// frame's details, the arrow keys move a cursor from frame to frame and Enter zooms to it.
(function (FV) {
  "use strict";

  const ROW = 18;
  const FONT = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, \"DejaVu Sans Mono\", " +
    "\"Liberation Mono\", monospace";
  const MIN_PX = 0.4;
  const LABEL_PX = 22;
  const MATCH = "rgb(230,0,230)";
  const colorCache = new WeakMap();

  class Graph {
    // options: orientation ("icicle" | "flame"), label (for screen readers),
    // describe(node) -> lines for the tooltip, onZoom(node), onCursor(node),
    // maxHeight() -> pixels the scrolling area may take, byTotal (in a comparison, colour by
    // the change of a frame's total rather than its own samples: for the callers' graph).
    constructor(holder, options) {
      this.options = options;
      this.orientation = options.orientation || "icicle";
      this.tree = null;
      this.zoom = 0;
      this.cursor = -1;
      this.marks = null;
      this.largest = 1;
      this.layout = {node: [], x: [], w: [], rows: 0};
      this.width = 0;
      this.height = 0;
      this.pending = 0;
      this.build(holder);
      this.bind();
    }

    build(holder) {
      const make = (tag, cls) => {
        const element = document.createElement(tag);
        element.className = cls;
        return element;
      };
      this.scroller = make("div", "graph-scroll");
      this.canvas = make("canvas", "graph-canvas");
      this.canvas.tabIndex = 0;
      this.canvas.setAttribute("role", "img");
      this.canvas.setAttribute("aria-label", (this.options.label || "flame graph") +
        ": arrow keys move between frames, Enter zooms, Escape resets");
      this.spacer = make("div", "graph-spacer");
      this.tip = make("div", "graph-tip");
      this.tip.setAttribute("role", "tooltip");
      this.tip.hidden = true;
      this.scroller.append(this.canvas, this.spacer);
      holder.replaceChildren(this.scroller, this.tip);
      holder.flamedGraph = this;
    }

    bind() {
      const canvas = this.canvas;
      canvas.addEventListener("mousemove", (event) => this.hover(event));
      canvas.addEventListener("mouseleave", () => {
        this.tip.hidden = true;
      });
      canvas.addEventListener("click", (event) => {
        const node = this.nodeAt(event);
        if (node >= 0) {
          this.setCursor(node);
          this.zoomTo(node);
        }
      });
      canvas.addEventListener("keydown", (event) => this.key(event));
      this.scroller.addEventListener("scroll", () => this.schedule());
      new ResizeObserver(() => this.resize()).observe(this.scroller);
    }

    // -- data --------------------------------------------------------------------------------

    // A new tree; zoom and cursor follow the same stacks in it when `keep` is set.
    setTree(tree, keep) {
      const old = this.tree;
      const zoomPath = keep && old ? FV.pathOf(old, this.zoom) : [];
      const cursorPath = keep && old && this.cursor >= 0 ? FV.pathOf(old, this.cursor) : null;
      this.tree = tree;
      this.largest = tree.baseSelf ? FV.largestDelta(tree, this.options.byTotal) : 1;
      this.zoom = FV.findPath(tree, zoomPath);
      this.cursor = cursorPath ? FV.findPath(tree, cursorPath) : -1;
      this.relayout(!keep);
    }

    setMarks(marks) {
      this.marks = marks;
      this.schedule();
    }

    setOrientation(orientation) {
      if (orientation !== this.orientation) {
        this.orientation = orientation;
        this.relayout(true);
      }
    }

    zoomTo(node) {
      if (!this.tree || !(this.tree.total[node] > 0)) {
        return;
      }
      this.zoom = node;
      this.relayout(false);
      this.reveal(node);
      if (this.options.onZoom) {
        this.options.onZoom(node);
      }
    }

    // -- layout ------------------------------------------------------------------------------

    relayout(home) {
      this.width = Math.max(1, Math.floor(this.scroller.clientWidth));
      this.layout = this.tree ? layOut(this.tree, this.zoom, this.width) : {node: [], x: [], w: [],
        rows: 0};
      const content = this.layout.rows * ROW;
      const height = Math.max(ROW, Math.min(this.maxHeight(), content));
      this.height = height;
      this.scroller.style.height = height + "px";
      this.canvas.style.height = height + "px";
      this.spacer.style.height = Math.max(0, content - height) + "px";
      if (home) {
        this.scroller.scrollTop = this.orientation === "flame" ? content : 0;
      }
      this.draw();
    }

    maxHeight() {
      return this.options.maxHeight ? this.options.maxHeight() : 600;
    }

    rowTop(depth) {
      return (this.orientation === "flame" ? this.layout.rows - 1 - depth : depth) * ROW;
    }

    resize() {
      if (Math.floor(this.scroller.clientWidth) !== this.width) {
        this.relayout(false);
      }
    }

    // Scroll so that `node`'s row is in view.
    reveal(node) {
      const top = this.rowTop(this.tree.depth[node]);
      const view = this.scroller;
      if (top < view.scrollTop + ROW) {
        view.scrollTop = Math.max(0, top - ROW);
      } else if (top + 2 * ROW > view.scrollTop + this.height) {
        view.scrollTop = top + 2 * ROW - this.height;
      }
      this.draw();
    }

    // -- drawing -----------------------------------------------------------------------------

    schedule() {
      if (!this.pending) {
        this.pending = window.requestAnimationFrame(() => {
          this.pending = 0;
          this.draw();
        });
      }
    }

    draw() {
      const ratio = window.devicePixelRatio || 1;
      const canvas = this.canvas;
      const width = this.width;
      const height = this.height;
      if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
        canvas.width = Math.round(width * ratio);
        canvas.height = Math.round(height * ratio);
      }
      canvas.style.width = width + "px";
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = FONT;
      ctx.textBaseline = "middle";
      if (!this.layout.node.length) {
        ctx.fillStyle = "#6b6b70";
        ctx.fillText("no samples in this range", 8, ROW / 2);
      }
      const shown = this.visible();
      this.boxes(ctx, shown);
      ctx.fillStyle = "#000";
      const charWidth = ctx.measureText("0").width || 7;
      shown.forEach((k) => this.text(ctx, k, charWidth));
      this.outlineCursor(ctx);
      canvas.dataset.drawn = String(shown.length);
    }

    // Indexes into the layout of the frames inside the scrolled view.
    visible() {
      const {node, x} = this.layout;
      const depth = this.tree ? this.tree.depth : null;
      const top = this.scroller.scrollTop;
      const shown = [];
      for (let k = 0; k < node.length; k++) {
        const y = this.rowTop(depth[node[k]]) - top;
        if (y > -ROW && y < this.height && x[k] < this.width) {
          shown.push(k);
        }
      }
      return shown;
    }

    frameBox(k) {
      const {node, x, w} = this.layout;
      const y = this.rowTop(this.tree.depth[node[k]]) - this.scroller.scrollTop;
      return {x: x[k], y: y, w: Math.max(w[k] - (w[k] > 2 ? 1 : 0), 0.5), h: ROW - 1};
    }

    // The frames' boxes, one fill colour at a time (setting a colour is the costly part),
    // then the stripes of folded runs and the shade over the zoomed frame's ancestors.
    boxes(ctx, shown) {
      const byColor = new Map();
      shown.forEach((k) => {
        const color = this.color(this.layout.node[k]);
        const list = byColor.get(color);
        if (list) {
          list.push(k);
        } else {
          byColor.set(color, [k]);
        }
      });
      byColor.forEach((list, color) => {
        ctx.fillStyle = color;
        list.forEach((k) => this.fill(ctx, k));
      });
      const runs = shown.filter((k) => this.tree.runMax[this.layout.node[k]]);
      if (runs.length) {
        ctx.fillStyle = hatch(ctx);
        runs.forEach((k) => this.fill(ctx, k));
      }
      ctx.fillStyle = "rgba(255,255,255,0.55)";
      shown.filter((k) => this.isAbove(this.layout.node[k])).forEach((k) => this.fill(ctx, k));
    }

    fill(ctx, k) {
      const {node, x, w} = this.layout;
      const y = this.rowTop(this.tree.depth[node[k]]) - this.scroller.scrollTop;
      ctx.fillRect(x[k], y, Math.max(w[k] - (w[k] > 2 ? 1 : 0), 0.5), ROW - 1);
    }

    text(ctx, k, charWidth) {
      if (this.layout.w[k] < LABEL_PX) {
        return;
      }
      const box = this.frameBox(k);
      const label = this.label(this.layout.node[k]);
      const room = Math.floor((box.w - 6) / charWidth);
      if (room < 2) {
        return;
      }
      const shown = label.length <= room ? label : label.slice(0, room - 1) + "…";
      ctx.fillText(shown, box.x + 3, box.y + box.h / 2 + 0.5);
    }

    outlineCursor(ctx) {
      const k = this.layout.node.indexOf(this.cursor);
      if (k < 0) {
        return;
      }
      const box = this.frameBox(k);
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.strokeRect(box.x + 1, box.y + 1, Math.max(box.w - 2, 1), box.h - 2);
    }

    color(node) {
      const tree = this.tree;
      const name = tree.name[node];
      if (this.marks && this.marks[name]) {
        return MATCH;
      }
      if (tree.baseSelf) {
        const delta = this.options.byTotal ? tree.total[node] - tree.baseTotal[node]
          : tree.self[node] - tree.baseSelf[node];
        return FV.diffColor(delta, this.largest);
      }
      const type = this.options.type ? this.options.type() : "cpu";
      let colors = colorCache.get(tree.names);
      if (!colors || colors.type !== type) {
        colors = new Array(tree.names.length);
        colors.type = type;
        colorCache.set(tree.names, colors);
      }
      return colors[name] || (colors[name] = FV.frameColor(tree.names[name], type));
    }

    // A frame's name, with the length of the run it stands for when runs are folded.
    label(node) {
      const tree = this.tree;
      const text = FV.shownName(tree.names[tree.name[node]]);
      const low = tree.runMin[node];
      const high = tree.runMax[node];
      if (!high) {
        return text;
      }
      return text + " ×" + (low === high ? high : low + "–" + high);
    }

    // True for the shaded ancestors of the zoomed frame.
    isAbove(node) {
      return node !== this.zoom && this.tree.end[node] > this.zoom && node < this.zoom;
    }

    // -- pointer -----------------------------------------------------------------------------

    nodeAt(event) {
      if (!this.tree) {
        return -1;
      }
      const rect = this.canvas.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const py = event.clientY - rect.top + this.scroller.scrollTop;
      const row = Math.floor(py / ROW);
      const depth = this.orientation === "flame" ? this.layout.rows - 1 - row : row;
      const {node, x, w} = this.layout;
      for (let k = 0; k < node.length; k++) {
        if (this.tree.depth[node[k]] === depth && px >= x[k] && px < x[k] + w[k]) {
          return node[k];
        }
      }
      return -1;
    }

    hover(event) {
      const node = this.nodeAt(event);
      this.canvas.style.cursor = node >= 0 ? "pointer" : "default";
      if (node < 0 || !this.options.describe) {
        this.tip.hidden = true;
        return;
      }
      const lines = this.options.describe(node, this.tree);
      this.tip.replaceChildren(...lines.map((line, n) => {
        const div = document.createElement("div");
        div.className = n === 0 ? "tip-name" : "tip-line";
        div.textContent = line;
        return div;
      }));
      this.tip.hidden = false;
      const room = window.innerWidth - this.tip.offsetWidth - 8;
      this.tip.style.left = Math.max(4, Math.min(event.clientX + 14, room)) + "px";
      const below = event.clientY + 18;
      const fits = below + this.tip.offsetHeight < window.innerHeight;
      this.tip.style.top = (fits ? below : event.clientY - this.tip.offsetHeight - 8) + "px";
    }

    // -- keyboard ----------------------------------------------------------------------------

    key(event) {
      if (!this.tree || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      const deeper = this.orientation === "flame" ? "ArrowUp" : "ArrowDown";
      const higher = this.orientation === "flame" ? "ArrowDown" : "ArrowUp";
      const moves = {
        [deeper]: () => this.childOf(this.cursor),
        [higher]: () => Math.max(0, this.tree.parent[this.cursor]),
        ArrowLeft: () => this.sibling(this.cursor, -1),
        ArrowRight: () => this.sibling(this.cursor, 1),
        Home: () => 0,
      };
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.zoomTo(this.cursor >= 0 ? this.cursor : 0);
      } else if (moves[event.key]) {
        event.preventDefault();
        this.setCursor(this.cursor < 0 ? this.zoom : moves[event.key]());
      }
    }

    setCursor(node) {
      this.cursor = node;
      this.draw();
      if (node >= 0) {
        this.reveal(node);
        if (this.options.onCursor) {
          this.options.onCursor(node);
        }
      }
    }

    // The next frame down: towards the zoomed frame above it, else the widest child in view.
    childOf(node) {
      const shown = FV.children(this.tree, node).filter((c) => this.laidOut(c));
      if (!shown.length) {
        return node;
      }
      return shown.reduce((best, c) => (this.tree.total[c] > this.tree.total[best] ? c : best));
    }

    sibling(node, step) {
      if (node <= this.zoom) {
        return node;
      }
      const row = FV.children(this.tree, this.tree.parent[node]).filter((c) => this.laidOut(c));
      const at = row.indexOf(node);
      return row[Math.min(row.length - 1, Math.max(0, at + step))];
    }

    laidOut(node) {
      return this.layout.node.includes(node);
    }

    // -- for tests and the page ----------------------------------------------------------------

    // The frames drawn now, in canvas pixels.
    frames() {
      return this.visible().map((k) => {
        const node = this.layout.node[k];
        const box = this.frameBox(k);
        return {node: node, name: this.tree.names[this.tree.name[node]], label: this.label(node),
          x: box.x, y: box.y, width: box.w, height: box.h, depth: this.tree.depth[node],
          above: this.isAbove(node), match: !!(this.marks && this.marks[this.tree.name[node]]),
          color: this.color(node)};
      });
    }
  }

  // The frames at least MIN_PX wide under `zoom` (and its ancestors, full width), with their x
  // and width in pixels, and the number of rows they take.
  function layOut(tree, zoom, width) {
    const node = [];
    const x = [];
    const w = [];
    let rows = 0;
    if (!(tree.total[zoom] > 0)) {
      return {node, x, w, rows};
    }
    for (let a = zoom; a >= 0; a = tree.parent[a]) {
      node.push(a);
      x.push(0);
      w.push(width);
      rows = Math.max(rows, tree.depth[a] + 1);
    }
    const scale = width / tree.total[zoom];
    const stack = [zoom];
    const starts = [0];
    while (stack.length) {
      const parent = stack.pop();
      let left = starts.pop();
      for (let c = parent + 1; c < tree.end[parent]; c = tree.end[c]) {
        const span = tree.total[c] * scale;
        if (span >= MIN_PX) {
          node.push(c);
          x.push(left);
          w.push(span);
          rows = Math.max(rows, tree.depth[c] + 1);
          stack.push(c);
          starts.push(left);
        }
        left += span;
      }
    }
    return {node, x, w, rows};
  }

  let pattern = null;

  // Diagonal stripes over a frame that stands for a folded run of identical frames.
  function hatch(ctx) {
    if (!pattern) {
      const tile = document.createElement("canvas");
      tile.width = 8;
      tile.height = 8;
      const t = tile.getContext("2d");
      t.strokeStyle = "rgba(0,0,0,0.35)";
      t.lineWidth = 1.5;
      t.beginPath();
      t.moveTo(0, 8);
      t.lineTo(8, 0);
      t.stroke();
      pattern = ctx.createPattern(tile, "repeat");
    }
    return pattern;
  }

  FV.Graph = Graph;
})(window.flamedViewer = window.flamedViewer || {});
