// flamed's viewer, the profile model: the call tree the daemon sends (api/v1/profile), in
// typed arrays, and everything computed from it: folded runs of identical frames, the
// comparison of two ranges, each function's self and total, search, the sandwich. No DOM:
// the tests run this file under Node.js.
//
// A Tree holds its nodes in preorder, node 0 the root ("all", or the chosen function in a
// sandwich). For node i: name[i] indexes names, parent[i], depth[i], end[i] (one past the
// last node of its subtree, so its children are i + 1, end[i + 1], ... up to end[i]),
// self[i] and total[i] samples; a comparison adds baseSelf and baseTotal (the baseline's);
// runMin/runMax are the lengths of the runs a folded node stands for (0 elsewhere).
(function (FV) {
  "use strict";

  const ROOT_NAME = "all";
  const OFF_CPU_MARK = "_[o]";  // the frames of off-CPU stacks in a hot/cold profile
  const FOLD_RUNS = 4;

  class BadProfile extends Error {}

  function makeTree(names, count, compared) {
    return {
      names: names,
      count: count,
      name: new Int32Array(count),
      parent: new Int32Array(count),
      depth: new Int32Array(count),
      end: new Int32Array(count),
      self: new Float64Array(count),
      total: new Float64Array(count),
      baseSelf: compared ? new Float64Array(count) : null,
      baseTotal: compared ? new Float64Array(count) : null,
      runMin: new Int32Array(count),
      runMax: new Int32Array(count),
      folded: false,
    };
  }

  // Totals and subtree ends from selves and parents (children come after their parent).
  function sumUp(tree) {
    const {parent, self, total, end, baseSelf, baseTotal} = tree;
    for (let i = 0; i < tree.count; i++) {
      total[i] = self[i];
      end[i] = i + 1;
      if (baseSelf) {
        baseTotal[i] = baseSelf[i];
      }
    }
    for (let i = tree.count - 1; i > 0; i--) {
      const p = parent[i];
      total[p] += total[i];
      if (end[i] > end[p]) {
        end[p] = end[i];
      }
      if (baseSelf) {
        baseTotal[p] += baseTotal[i];
      }
    }
    return tree;
  }

  // The daemon's JSON (see render/jsonprofile.py) as a Tree; throws BadProfile on nonsense.
  function fromJson(doc) {
    const columns = doc && doc.tree;
    if (!columns || !Array.isArray(doc.names) || !Array.isArray(columns.name) ||
        columns.depth.length !== columns.name.length || columns.self.length !== columns.name.length) {
      throw new BadProfile("the daemon sent a profile this page cannot read");
    }
    const names = doc.names.concat([ROOT_NAME]);
    const tree = makeTree(names, columns.name.length + 1, false);
    tree.name[0] = names.length - 1;
    tree.parent[0] = -1;
    const last = [0];  // the latest node at each depth up to `deepest`
    let deepest = 0;
    for (let i = 1; i < tree.count; i++) {
      const depth = columns.depth[i - 1];
      const name = columns.name[i - 1];
      if (!(depth >= 1 && depth <= deepest + 1) || !(name >= 0 && name < names.length - 1)) {
        throw new BadProfile("the daemon sent a malformed call tree (node " + i + ")");
      }
      last[depth] = i;
      deepest = depth;
      tree.name[i] = name;
      tree.depth[i] = depth;
      tree.parent[i] = last[depth - 1];
      tree.self[i] = +columns.self[i - 1] || 0;
    }
    return sumUp(tree);
  }

  // Builds a tree by (parent, name) -> child, then orders it: preorder, children by name.
  // A node's children are looked up in a hash table only once more than one source feeds it
  // (a frame a run was folded into, a node both compared trees have): copying a tree as it
  // is costs no lookup at all, and a million nodes take a fraction of a second.
  class Builder {
    constructor(names, rootName, compared, expected) {
      this.names = names;
      this.compared = compared;
      this.size = 1;
      this.capacity = 0;
      this.resize(powerOfTwo(Math.max(1024, expected || 0)));
      this.name[0] = rootName;
      this.parent[0] = -1;
    }

    resize(capacity) {
      const keep = (old, Type, fill) => {
        const array = new Type(capacity);
        if (fill) {
          array.fill(fill);
        }
        if (old) {
          array.set(old.subarray(0, this.size));
        }
        return array;
      };
      this.name = keep(this.name, Int32Array);
      this.parent = keep(this.parent, Int32Array);
      this.self = keep(this.self, Float64Array);
      this.base = keep(this.base, Float64Array);
      this.runMin = keep(this.runMin, Int32Array);
      this.runMax = keep(this.runMax, Int32Array);
      this.firstChild = keep(this.firstChild, Int32Array, -1);
      this.lastChild = keep(this.lastChild, Int32Array, -1);
      this.nextSibling = keep(this.nextSibling, Int32Array, -1);
      this.shared = keep(this.shared, Uint8Array);
      this.capacity = capacity;
      if (!this.slots) {
        this.rehash(1024);
      }
    }

    // The table: (parent, name, node) in three consecutive entries per slot, so that a probe
    // reads one cache line (node -1: empty), at most half full; it holds the children of the
    // shared nodes only.
    rehash(slots) {
      this.slots = new Int32Array(slots * 3).fill(-1);
      this.stored = 0;
      for (let node = 1; node < this.size; node++) {
        if (this.shared[this.parent[node]]) {
          this.store(this.find(this.parent[node], this.name[node]), node);
        }
      }
    }

    // The slot of (parent, name): the node's, or the empty one where it would go.
    find(parent, name) {
      const slots = this.slots;
      const mask = slots.length / 3 - 1;
      let at = (Math.imul(parent, 0x9e3779b1) ^ Math.imul(name + 1, 0x85ebca77)) & mask;
      for (;;) {
        const k = at * 3;
        if (slots[k + 2] < 0 || (slots[k] === parent && slots[k + 1] === name)) {
          return k;
        }
        at = (at + 1) & mask;
      }
    }

    store(k, node) {
      this.slots[k] = this.parent[node];
      this.slots[k + 1] = this.name[node];
      this.slots[k + 2] = node;
      this.stored++;
    }

    roomy() {
      if (this.stored * 6 > this.slots.length) {
        this.rehash(this.slots.length / 3 * 2);
      }
    }

    // From now on `node` may be given children by more than one source: index them.
    share(node) {
      if (!this.shared[node]) {
        this.shared[node] = 1;
        for (let c = this.firstChild[node]; c >= 0; c = this.nextSibling[c]) {
          this.roomy();
          this.store(this.find(node, this.name[c]), c);
        }
      }
    }

    child(parent, name) {
      let k = -1;
      if (this.shared[parent]) {
        this.roomy();
        k = this.find(parent, name);
        const found = this.slots[k + 2];
        if (found >= 0) {
          this.share(found);
          return found;
        }
      }
      if (this.size === this.capacity) {
        this.resize(this.capacity * 2);
        return this.child(parent, name);
      }
      const node = this.size++;
      this.name[node] = name;
      this.parent[node] = parent;
      if (this.lastChild[parent] < 0) {
        this.firstChild[parent] = node;
      } else {
        this.nextSibling[this.lastChild[parent]] = node;
      }
      this.lastChild[parent] = node;
      if (k >= 0) {
        this.store(k, node);
      }
      return node;
    }

    add(node, self, base) {
      this.self[node] += self;
      this.base[node] += base;
    }

    run(node, min, max) {
      if (max > 0) {
        this.runMin[node] = this.runMin[node] ? Math.min(this.runMin[node], min) : min;
        this.runMax[node] = Math.max(this.runMax[node], max);
      }
    }

    finish() {
      const order = this.preorder();
      const count = order.length;
      const tree = makeTree(this.names, count, this.compared);
      const index = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        index[order[i]] = i;
      }
      for (let i = 0; i < count; i++) {
        const old = order[i];
        tree.name[i] = this.name[old];
        tree.parent[i] = i === 0 ? -1 : index[this.parent[old]];
        tree.depth[i] = i === 0 ? 0 : tree.depth[tree.parent[i]] + 1;
        tree.self[i] = this.self[old];
        tree.runMin[i] = this.runMin[old];
        tree.runMax[i] = this.runMax[old];
        if (this.compared) {
          tree.baseSelf[i] = this.base[old];
        }
      }
      return sumUp(tree);
    }

    // Old node numbers in preorder, each node's children sorted by name.
    preorder() {
      const count = this.size;
      const rank = nameRanks(this.names);
      const order = new Int32Array(count);
      const stack = new Int32Array(count);
      const kids = new Int32Array(count);
      let top = 0;
      let emitted = 0;
      stack[top++] = 0;
      while (top) {
        const node = stack[--top];
        order[emitted++] = node;
        let many = 0;
        for (let c = this.firstChild[node]; c >= 0; c = this.nextSibling[c]) {
          kids[many++] = c;
        }
        sortByRank(kids, many, rank, this.name);
        for (let k = many - 1; k >= 0; k--) {
          stack[top++] = kids[k];
        }
      }
      return order;
    }
  }

  // The first `many` nodes sorted by their name's rank: an insertion sort for the usual few
  // (often in order already), the engine's sort for many.
  function sortByRank(nodes, many, rank, name) {
    if (many > 24) {
      nodes.subarray(0, many).sort((a, b) => rank[name[a]] - rank[name[b]]);
      return;
    }
    for (let i = 1; i < many; i++) {
      const node = nodes[i];
      const key = rank[name[node]];
      let j = i - 1;
      while (j >= 0 && rank[name[nodes[j]]] > key) {
        nodes[j + 1] = nodes[j];
        j--;
      }
      nodes[j + 1] = node;
    }
  }

  function powerOfTwo(value) {
    let size = 1;
    while (size < value) {
      size *= 2;
    }
    return size;
  }

  const ranksOf = new WeakMap();

  function nameRanks(names) {
    let rank = ranksOf.get(names);
    if (!rank) {
      const sorted = names.map((_, i) => i).sort((a, b) =>
        names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : a - b);
      rank = new Int32Array(names.length);
      sorted.forEach((name, position) => {
        rank[name] = position;
      });
      ranksOf.set(names, rank);
    }
    return rank;
  }

  // -- folding runs of identical frames --------------------------------------------------

  // Per node, the longest run of same-named frames through it (1 when alone).
  function runLengths(tree) {
    const {name, parent, count} = tree;
    const up = new Int32Array(count);
    const down = new Int32Array(count).fill(1);
    for (let i = 1; i < count; i++) {
      const p = parent[i];
      up[i] = p > 0 && name[p] === name[i] ? up[p] + 1 : 1;
    }
    for (let i = count - 1; i > 0; i--) {
      const p = parent[i];
      if (p > 0 && name[p] === name[i] && down[i] + 1 > down[p]) {
        down[p] = down[i] + 1;
      }
    }
    return up.map((value, i) => value + down[i] - 1);
  }

  // The tree with every run of at least `minimum` identical frames drawn as one frame that
  // remembers the run's length; the same tree when there is none. Only the view changes.
  function foldRuns(tree, minimum) {
    const least = minimum || FOLD_RUNS;
    const runs = runLengths(tree);
    if (!runs.some((run) => run >= least)) {
      return tree;
    }
    const {name, parent} = tree;
    const builder = new Builder(tree.names, tree.name[0], !!tree.baseSelf, tree.count);
    const into = new Int32Array(tree.count);
    for (let i = 1; i < tree.count; i++) {
      const p = parent[i];
      if (runs[i] >= least && p > 0 && name[p] === name[i]) {
        into[i] = into[p];
        builder.share(into[p]);
      } else {
        into[i] = builder.child(into[p], name[i]);
        if (runs[i] >= least) {
          builder.run(into[i], runs[i], runs[i]);
        }
      }
      builder.add(into[i], tree.self[i], tree.baseSelf ? tree.baseSelf[i] : 0);
    }
    builder.add(0, tree.self[0], tree.baseSelf ? tree.baseSelf[0] : 0);
    const folded = builder.finish();
    folded.folded = true;
    return folded;
  }

  // -- comparing two ranges ------------------------------------------------------------------

  // One tree of both: widths (self, total) from `after`, the baseline in baseSelf/baseTotal.
  function compare(after, before) {
    const names = after.names.slice(0, -1);
    const known = new Map(names.map((text, i) => [text, i]));
    const remap = before.names.slice(0, -1).map((text) => {
      if (!known.has(text)) {
        known.set(text, names.length);
        names.push(text);
      }
      return known.get(text);
    });
    names.push(ROOT_NAME);
    const rootName = names.length - 1;
    const afterNames = after.names.map((_, i) => (i === after.names.length - 1 ? rootName : i));
    remap.push(rootName);
    const builder = new Builder(names, rootName, true, Math.max(after.count, before.count));
    graft(builder, after, afterNames, false);
    builder.share(0);
    graft(builder, before, remap, true);
    return builder.finish();
  }

  function graft(builder, tree, names, isBase) {
    const into = new Int32Array(tree.count);
    for (let i = 0; i < tree.count; i++) {
      into[i] = i === 0 ? 0 : builder.child(into[tree.parent[i]], names[tree.name[i]]);
      builder.add(into[i], isBase ? 0 : tree.self[i], isBase ? tree.self[i] : 0);
      builder.run(into[i], tree.runMin[i], tree.runMax[i]);
    }
  }

  // -- the top table -------------------------------------------------------------------------

  // Each function's self and total (a function counts once in a stack, however often it
  // recurs there): {names: [name index...], self, total, baseSelf, baseTotal} by name index.
  function functionStats(tree) {
    const size = tree.names.length;
    const stats = {
      self: new Float64Array(size),
      total: new Float64Array(size),
      baseSelf: tree.baseSelf ? new Float64Array(size) : null,
      baseTotal: tree.baseSelf ? new Float64Array(size) : null,
      names: [],
    };
    const onPath = new Int32Array(size);
    const open = [];
    for (let i = 1; i < tree.count; i++) {
      while (open.length && tree.end[open[open.length - 1]] <= i) {
        onPath[tree.name[open.pop()]]--;
      }
      const name = tree.name[i];
      stats.self[name] += tree.self[i];
      if (stats.baseSelf) {
        stats.baseSelf[name] += tree.baseSelf[i];
      }
      if (onPath[name] === 0) {
        stats.total[name] += tree.total[i];
        if (stats.baseTotal) {
          stats.baseTotal[name] += tree.baseTotal[i];
        }
      }
      onPath[name]++;
      open.push(i);
    }
    for (let name = 0; name < size; name++) {
      if (stats.total[name] > 0 || (stats.baseTotal && stats.baseTotal[name] > 0)) {
        stats.names.push(name);
      }
    }
    return stats;
  }

  // -- search --------------------------------------------------------------------------------

  // A RegExp for the search box's text, null for none; throws SyntaxError for a bad one.
  function matcher(text, ignoreCase) {
    return text ? new RegExp(text, ignoreCase ? "i" : "") : null;
  }

  // 1 for each name the pattern matches.
  function matchNames(names, pattern) {
    const marks = new Uint8Array(names.length);
    if (pattern) {
      names.forEach((text, i) => {
        marks[i] = pattern.test(text) ? 1 : 0;
      });
    }
    return marks;
  }

  // Samples under a matching frame (each counted once) below `top` (the root by default).
  function matchedTotal(tree, marks, top) {
    const start = top || 0;
    let sum = 0;
    let i = start + 1;
    while (i < tree.end[start]) {
      if (marks[tree.name[i]]) {
        sum += tree.total[i];
        i = tree.end[i];
      } else {
        i++;
      }
    }
    return start > 0 && marks[tree.name[start]] ? tree.total[start] : sum;
  }

  // -- paths (zoom in the URL) and the sandwich ------------------------------------------------

  function children(tree, node) {
    const list = [];
    for (let c = node + 1; c < tree.end[node]; c = tree.end[c]) {
      list.push(c);
    }
    return list;
  }

  // The names from the root's child down to `node`.
  function pathOf(tree, node) {
    const path = [];
    for (let i = node; i > 0; i = tree.parent[i]) {
      path.push(tree.names[tree.name[i]]);
    }
    return path.reverse();
  }

  // The node at the end of `path` (names), or the deepest one on it that exists.
  function findPath(tree, path) {
    let node = 0;
    for (const text of path) {
      const next = children(tree, node).find((c) => tree.names[tree.name[c]] === text);
      if (next === undefined) {
        break;
      }
      node = next;
    }
    return node;
  }

  // Every outermost frame of function `name` (frames of it inside another are not visited).
  function eachOutermost(tree, name, visit) {
    let i = 1;
    while (i < tree.count) {
      if (tree.name[i] === name) {
        visit(i);
        i = tree.end[i];
      } else {
        i++;
      }
    }
  }

  // What `name` calls: the subtrees under its outermost frames, merged, with it as the root.
  function callees(tree, name) {
    const builder = new Builder(tree.names, name, !!tree.baseSelf);
    builder.share(0);  // every frame of the function feeds the root
    const into = new Int32Array(tree.count);
    eachOutermost(tree, name, (top) => {
      into[top] = 0;
      builder.add(0, tree.self[top], tree.baseSelf ? tree.baseSelf[top] : 0);
      for (let i = top + 1; i < tree.end[top]; i++) {
        const node = builder.child(into[tree.parent[i]], tree.name[i]);
        into[i] = node;
        builder.add(node, tree.self[i], tree.baseSelf ? tree.baseSelf[i] : 0);
        builder.run(node, tree.runMin[i], tree.runMax[i]);
      }
    });
    return builder.finish();
  }

  // Who calls `name`: the stacks above its outermost frames, upside down, with it as the root
  // (its callers are its children, theirs their grandchildren, ...).
  function callers(tree, name) {
    const builder = new Builder(tree.names, name, !!tree.baseSelf);
    builder.share(0);
    eachOutermost(tree, name, (top) => {
      let node = 0;
      for (let i = tree.parent[top]; i > 0; i = tree.parent[i]) {
        node = builder.child(node, tree.name[i]);
        builder.run(node, tree.runMin[i], tree.runMax[i]);
      }
      builder.add(node, tree.total[top], tree.baseTotal ? tree.baseTotal[top] : 0);
    });
    return builder.finish();
  }

  // The widest frame of function `name`, or 0.
  function widest(tree, name) {
    let best = 0;
    eachOutermost(tree, name, (node) => {
      if (!best || tree.total[node] > tree.total[best]) {
        best = node;
      }
    });
    return best;
  }

  // -- colours -------------------------------------------------------------------------------

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) {
        c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      }
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(bytes) {
    let crc = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) {
      crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
    }
    return (crc ^ 0xffffffff) >>> 0;
  }

  const encoder = new TextEncoder();

  // The flame graphs' "hot" colour of a name: the same CRC-32 rule as the SVG (render/palette.py).
  function hotColor(text) {
    const [first, second] = nameValues(text);
    const r = 205 + Math.floor(50 * second);
    const g = Math.floor(230 * first);
    const b = Math.floor(55 * second);
    return "rgb(" + r + "," + g + "," + b + ")";
  }

  // Blue-grey, as the SVG's "io" palette: the colour of time off CPU.
  function ioColor(text) {
    const [first, second] = nameValues(text);
    const grey = 80 + Math.floor(60 * first);
    return "rgb(" + grey + "," + grey + "," + (190 + Math.floor(55 * second)) + ")";
  }

  function nameValues(text) {
    const bytes = encoder.encode(text);
    return [crc32(bytes) / 0x100000000, crc32(bytes.slice().reverse()) / 0x100000000];
  }

  // A frame's name as shown: without the off-CPU mark of a hot/cold profile (its colour says it).
  function shownName(text) {
    return text.endsWith(OFF_CPU_MARK) ? text.slice(0, -OFF_CPU_MARK.length) : text;
  }

  // A frame's colour in a profile of `type`: off-CPU frames (all of an off-CPU profile, those
  // marked _[o] in a hot/cold one) blue, the others hot.
  function frameColor(text, type) {
    const off = type === "offcpu" || (type === "hotcold" && text.endsWith(OFF_CPU_MARK));
    return off ? ioColor(text) : hotColor(text);
  }

  // Red where `delta` grew, blue where it shrank, white for none (as the SVG's diff).
  function diffColor(delta, largest) {
    if (delta > 0) {
      const other = Math.floor(210 * (largest - delta) / largest);
      return "rgb(255," + other + "," + other + ")";
    }
    if (delta < 0) {
      const other = Math.floor(210 * (largest + delta) / largest);
      return "rgb(" + other + "," + other + ",255)";
    }
    return "rgb(255,255,255)";
  }

  // The largest change in a frame's own samples (or total), at least 1.
  function largestDelta(tree, byTotal) {
    const [after, before] = byTotal ? [tree.total, tree.baseTotal] : [tree.self, tree.baseSelf];
    let largest = 1;
    for (let i = 1; i < tree.count; i++) {
      largest = Math.max(largest, Math.abs(after[i] - before[i]));
    }
    return largest;
  }

  Object.assign(FV, {
    BadProfile, fromJson, foldRuns, compare, functionStats, matcher, matchNames,
    matchedTotal, children, pathOf, findPath, callees, callers, widest, hotColor, ioColor, frameColor, shownName, diffColor,
    largestDelta,
  });
})(typeof module === "object" && module.exports ? module.exports
  : (window.flamedViewer = window.flamedViewer || {}));
