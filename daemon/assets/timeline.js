// flamed's viewer, the timeline: samples per second of the target over the chosen window, one
// bar per bucket (api/v1/timeline), on a canvas above the graph. Dragging across it selects a
// range (or, in compare mode, the baseline); a click without a drag clears the selection. From
// the keyboard: the arrow keys move a cursor a bucket at a time (Page Up/Down ten, Home/End to
// the edges), with Shift they stretch a selection from where it began, Enter applies it,
// Escape drops it and Delete clears the one applied.
(function (FV) {
  "use strict";

  const HEIGHT = 72;
  const AXIS = 16;
  const TICKS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
    43200, 86400];
  const COLORS = {range: "rgba(234,88,12,0.22)", baseline: "rgba(37,99,235,0.22)"};
  const EDGES = {range: "rgb(194,65,12)", baseline: "rgb(29,78,216)"};
  const CURSOR = "#1d1d1f";

  class Timeline {
    // options: onSelect(which, from, until) (from null: cleared), utc() -> bool, say(text):
    // what the keyboard cursor is on, for a live region.
    constructor(canvas, options) {
      this.canvas = canvas;
      this.options = options;
      this.data = {buckets: [], start: 0, end: 1, range: null, baseline: null, mode: "range"};
      this.drag = null;
      this.keys = null;  // the keyboard's {at, anchor}: cursor time, selection start or null
      canvas.tabIndex = 0;
      canvas.addEventListener("keydown", (event) => this.key(event));
      canvas.addEventListener("blur", () => this.leave());
      canvas.addEventListener("pointerdown", (event) => this.down(event));
      canvas.addEventListener("pointermove", (event) => this.move(event));
      canvas.addEventListener("pointerup", (event) => this.up(event));
      canvas.addEventListener("pointercancel", () => {
        this.drag = null;
        this.draw();
      });
      new ResizeObserver(() => this.draw()).observe(canvas);
    }

    // buckets: [[start, end, samples]...]; start/end: the span shown; range/baseline: [from,
    // until] or null; mode: which of them a drag sets.
    set(data) {
      this.data = Object.assign({}, this.data, data);
      this.draw();
    }

    x(time) {
      const {start, end} = this.data;
      return ((time - start) / (end - start)) * this.canvas.clientWidth;
    }

    time(x) {
      const {start, end} = this.data;
      const share = Math.min(1, Math.max(0, x / Math.max(1, this.canvas.clientWidth)));
      return start + share * (end - start);
    }

    draw() {
      const canvas = this.canvas;
      const width = canvas.clientWidth;
      if (!width) {
        return;
      }
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(HEIGHT * ratio);
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, HEIGHT);
      const peak = this.bars(ctx, width);
      this.axis(ctx, width, peak);
      this.shade(ctx, "baseline", this.data.baseline);
      this.shade(ctx, "range", this.data.range);
      if (this.drag && this.drag.moved) {
        this.shade(ctx, this.data.mode, [this.drag.from, this.drag.to].sort((a, b) => a - b));
      }
      if (this.keys) {
        this.mark(ctx);
      }
    }

    mark(ctx) {
      const {at, anchor} = this.keys;
      if (anchor !== null) {
        this.shade(ctx, this.data.mode, [anchor, at].sort((a, b) => a - b));
      }
      ctx.fillStyle = CURSOR;
      ctx.fillRect(Math.round(this.x(at)) - 1, 0, 2, HEIGHT - AXIS);
    }

    bars(ctx, width) {
      const chart = HEIGHT - AXIS;
      const rates = this.data.buckets.map(([from, until, count]) => count / Math.max(until - from,
        0.001));
      const peak = Math.max(1, ...rates);
      ctx.fillStyle = "#f4f4f6";
      ctx.fillRect(0, 0, width, chart);
      ctx.fillStyle = "rgb(234,88,12)";
      this.data.buckets.forEach(([from, until], n) => {
        const left = this.x(from);
        const span = Math.max(1, this.x(until) - left - (this.x(until) - left > 3 ? 1 : 0));
        const tall = (rates[n] / peak) * (chart - 4);
        ctx.fillRect(left, chart - tall, span, tall);
      });
      this.canvas.dataset.bars = String(rates.length);
      return peak;
    }

    axis(ctx, width, peak) {
      const {start, end} = this.data;
      const utc = this.options.utc();
      const step = TICKS.find((s) => (s / (end - start)) * width >= 90) || 86400;
      const days = end - start > 86400;
      ctx.fillStyle = "#6b6b70";
      ctx.strokeStyle = "#d8d8dc";
      ctx.font = "11px system-ui, -apple-system, \"Segoe UI\", sans-serif";
      ctx.textBaseline = "top";
      const offset = utc ? 0 : -new Date(start * 1000).getTimezoneOffset() * 60;
      for (let t = Math.ceil((start + offset) / step) * step - offset; t <= end; t += step) {
        const at = this.x(t);
        ctx.beginPath();
        ctx.moveTo(at + 0.5, 0);
        ctx.lineTo(at + 0.5, HEIGHT - AXIS + 3);
        ctx.stroke();
        const text = days && step >= 3600 ? FV.format.dayClock(t, utc)
          : FV.format.clock(t, utc, step < 60);
        ctx.fillText(text, Math.min(at + 3, width - ctx.measureText(text).width - 2),
          HEIGHT - AXIS + 3);
      }
      ctx.textBaseline = "top";
      ctx.fillStyle = "#1d1d1f";
      ctx.fillText(FV.format.count(Math.round(peak)) + " samples/s", 4, 3);
    }

    shade(ctx, which, span) {
      if (!span) {
        return;
      }
      const left = this.x(span[0]);
      const right = this.x(span[1]);
      ctx.fillStyle = COLORS[which];
      ctx.fillRect(left, 0, Math.max(1, right - left), HEIGHT - AXIS);
      ctx.fillStyle = EDGES[which];
      ctx.fillRect(left, 0, 2, HEIGHT - AXIS);
      ctx.fillRect(right - 2, 0, 2, HEIGHT - AXIS);
    }

    point(event) {
      return event.clientX - this.canvas.getBoundingClientRect().left;
    }

    down(event) {
      if (event.button !== 0) {
        return;
      }
      this.canvas.setPointerCapture(event.pointerId);
      const at = this.point(event);
      this.drag = {x: at, from: this.time(at), to: this.time(at), moved: false};
    }

    move(event) {
      if (!this.drag) {
        return;
      }
      const at = this.point(event);
      this.drag.to = this.time(at);
      this.drag.moved = this.drag.moved || Math.abs(at - this.drag.x) >= 4;
      this.draw();
    }

    up(event) {
      const drag = this.drag;
      this.drag = null;
      if (!drag) {
        return;
      }
      drag.to = this.time(this.point(event));
      if (drag.moved) {
        const [from, until] = [drag.from, drag.to].sort((a, b) => a - b);
        this.options.onSelect(this.data.mode, Math.floor(from), Math.ceil(until));
      } else {
        this.options.onSelect(this.data.mode, null, null);
      }
      this.draw();
    }

    // -- the keyboard: a cursor, and a selection stretched from an anchor with Shift --

    key(event) {
      const target = this.target(event.key);
      if (target !== null) {
        event.preventDefault();
        this.moveTo(target, event.shiftKey);
      } else if (event.key === "Enter" && this.keys && this.keys.anchor !== null) {
        event.preventDefault();
        this.apply();
      } else if (event.key === "Escape" && this.keys && this.keys.anchor !== null) {
        event.preventDefault();  // dropped here, so the page's Escape does not also act
        this.keys.anchor = null;
        this.redraw();
      } else if (event.key === "Delete" || event.key === "Backspace") {
        event.preventDefault();
        this.options.onSelect(this.data.mode, null, null);
      }
    }

    // Where a key moves the cursor (a time), or null for a key that does not move it.
    target(key) {
      const {start, end} = this.data;
      const at = this.keys ? this.keys.at : this.home();
      const step = this.bucketSeconds();
      const moves = {ArrowLeft: at - step, ArrowRight: at + step, PageUp: at - 10 * step,
        PageDown: at + 10 * step, Home: start, End: end};
      return key in moves ? Math.min(end, Math.max(start, moves[key])) : null;
    }

    // Where the cursor starts: the end of the chosen range, or of the window.
    home() {
      const chosen = this.data[this.data.mode];
      return chosen ? chosen[1] : this.data.end;
    }

    bucketSeconds() {
      const first = this.data.buckets[0];
      return first ? Math.max(1, first[1] - first[0]) : Math.max(1, (this.data.end -
        this.data.start) / 100);
    }

    moveTo(time, stretch) {
      const keys = this.keys || {at: this.home(), anchor: null};
      if (stretch && keys.anchor === null) {
        keys.anchor = keys.at;
      } else if (!stretch) {
        keys.anchor = null;
      }
      keys.at = time;
      this.keys = keys;
      this.redraw();
    }

    apply() {
      const [from, until] = [this.keys.anchor, this.keys.at].sort((a, b) => a - b);
      this.keys.anchor = null;
      this.redraw();
      if (until > from) {
        this.options.onSelect(this.data.mode, Math.floor(from), Math.ceil(until));
      }
    }

    leave() {
      this.keys = null;
      this.redraw();
    }

    redraw() {
      this.draw();
      this.options.say(this.describe());
    }

    describe() {
      if (!this.keys) {
        return "";
      }
      const utc = this.options.utc();
      const {at, anchor} = this.keys;
      if (anchor === null) {
        return "at " + FV.format.clock(at, utc, true) + "; Shift+arrows select";
      }
      const [from, until] = [anchor, at].sort((a, b) => a - b);
      return FV.format.clock(from, utc, true) + " to " + FV.format.clock(until, utc, true) +
        " selected; Enter shows it, Escape drops it";
    }
  }

  FV.Timeline = Timeline;
})(window.flamedViewer = window.flamedViewer || {});
