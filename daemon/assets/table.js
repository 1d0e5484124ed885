// flamed's viewer, the top table: each function's self and total samples and shares (before,
// after and the change in compare mode), sortable, filtered by the search. A click or Enter
// focuses the graph on the function, "s" opens its sandwich; Up/Down/Home/End move between
// rows. At most ROWS rows are in the page at once (the search narrows the rest).
(function (FV) {
  "use strict";

  const ROWS = 500;
  const PLAIN = [
    ["name", "function"], ["self", "self"], ["selfShare", "self %"], ["total", "total"],
    ["totalShare", "total %"],
  ];
  const COMPARED = [
    ["name", "function"], ["baseSelf", "self before"], ["self", "self after"],
    ["selfDelta", "self change"], ["baseTotal", "total before"], ["total", "total after"],
    ["totalDelta", "total change"],
  ];

  class TopTable {
    // options: onFocus(name index), onSandwich(name index), onSort(key, descending).
    constructor(table, note, options) {
      this.table = table;
      this.note = note;
      this.options = options;
      this.rows = [];
      table.addEventListener("keydown", (event) => this.key(event));
      table.addEventListener("click", (event) => this.click(event));
    }

    // tree, stats (functionStats), pattern (RegExp or null), sort {key, descending}.
    show(tree, stats, pattern, sort) {
      const compared = !!stats.baseSelf;
      const columns = compared ? COMPARED : PLAIN;
      const key = columns.some(([name]) => name === sort.key) ? sort.key : "self";
      const value = valueOf(tree, stats, key);
      const names = stats.names.filter((n) => !pattern || pattern.test(tree.names[n]));
      names.sort((a, b) => {
        const order = key === "name" ? compareText(tree.names[a], tree.names[b])
          : value(a) - value(b);
        return (sort.descending ? -order : order) || a - b;
      });
      this.head(columns, key, sort.descending);
      this.rows = names.slice(0, ROWS);
      const body = this.table.tBodies[0];
      body.replaceChildren(...this.rows.map((n, i) => this.row(tree, stats, columns, n, i)));
      this.note.textContent = names.length > ROWS
        ? "the first " + ROWS + " of " + FV.format.count(names.length) +
          " functions; search to narrow them"
        : FV.format.count(names.length) + (names.length === 1 ? " function" : " functions") +
          (pattern ? " match the search" : "");
    }

    head(columns, key, descending) {
      const row = this.table.tHead.rows[0];
      row.replaceChildren(...columns.map(([name, title]) => {
        const th = document.createElement("th");
        th.className = name === "name" ? "" : "num";
        th.setAttribute("aria-sort", name !== key ? "none" : descending ? "descending"
          : "ascending");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        button.dataset.sort = name;
        button.textContent = title + (name === key ? (descending ? " ▾" : " ▴") : "");
        button.addEventListener("click", () => {
          const same = name === key;
          this.options.onSort(name, same ? !descending : name !== "name");
        });
        th.appendChild(button);
        return th;
      }));
    }

    row(tree, stats, columns, name, index) {
      const tr = document.createElement("tr");
      tr.dataset.name = String(name);
      tr.tabIndex = index === 0 ? 0 : -1;
      const whole = tree.total[0];
      const baseWhole = tree.baseTotal ? tree.baseTotal[0] : 0;
      const text = {
        name: tree.names[name],
        self: FV.format.count(stats.self[name]),
        selfShare: FV.format.percent(stats.self[name], whole),
        total: FV.format.count(stats.total[name]),
        totalShare: FV.format.percent(stats.total[name], whole),
      };
      if (stats.baseSelf) {
        Object.assign(text, {
          baseSelf: FV.format.count(stats.baseSelf[name]),
          baseTotal: FV.format.count(stats.baseTotal[name]),
          selfDelta: change(stats.self[name], stats.baseSelf[name], whole, baseWhole),
          totalDelta: change(stats.total[name], stats.baseTotal[name], whole, baseWhole),
        });
      }
      columns.forEach(([key]) => {
        const td = document.createElement("td");
        td.className = key === "name" ? "fn" : "num";
        td.textContent = text[key];
        if (key.endsWith("Delta")) {
          const delta = key === "selfDelta" ? stats.self[name] - stats.baseSelf[name]
            : stats.total[name] - stats.baseTotal[name];
          td.classList.add(delta > 0 ? "grew" : delta < 0 ? "shrank" : "same");
        }
        tr.appendChild(td);
      });
      const cell = tr.cells[0];
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link sandwich";
      button.tabIndex = -1;
      button.textContent = "callers/callees";
      button.title = "the sandwich view of this function";
      cell.appendChild(button);
      return tr;
    }

    rowOf(event) {
      const tr = event.target.closest("tr");
      return tr && tr.dataset.name !== undefined && tr.parentNode === this.table.tBodies[0]
        ? tr : null;
    }

    click(event) {
      const tr = this.rowOf(event);
      if (!tr) {
        return;
      }
      const name = parseInt(tr.dataset.name, 10);
      if (event.target.closest("button.sandwich")) {
        this.options.onSandwich(name);
      } else {
        this.options.onFocus(name);
      }
    }

    key(event) {
      const tr = this.rowOf(event);
      if (!tr || event.target !== tr) {
        return;
      }
      const rows = Array.from(this.table.tBodies[0].rows);
      const at = rows.indexOf(tr);
      const moves = {ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1,
        PageDown: at + 10, PageUp: at - 10};
      if (event.key in moves) {
        event.preventDefault();
        const next = rows[Math.min(rows.length - 1, Math.max(0, moves[event.key]))];
        tr.tabIndex = -1;
        next.tabIndex = 0;
        next.focus();
      } else if (event.key === "Enter") {
        event.preventDefault();
        this.options.onFocus(parseInt(tr.dataset.name, 10));
      } else if (event.key === "s") {
        event.preventDefault();
        this.options.onSandwich(parseInt(tr.dataset.name, 10));
      }
    }
  }

  function compareText(a, b) {
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function valueOf(tree, stats, key) {
    const columns = {
      self: stats.self, total: stats.total, selfShare: stats.self, totalShare: stats.total,
      baseSelf: stats.baseSelf, baseTotal: stats.baseTotal,
    };
    if (key === "selfDelta") {
      return (n) => stats.self[n] - stats.baseSelf[n];
    }
    if (key === "totalDelta") {
      return (n) => stats.total[n] - stats.baseTotal[n];
    }
    const column = columns[key] || stats.self;
    return (n) => column[n];
  }

  // "+120 (+2.1 pts)": the change in samples and in share of each range's total.
  function change(after, before, whole, baseWhole) {
    const share = (whole > 0 ? (100 * after) / whole : 0) -
      (baseWhole > 0 ? (100 * before) / baseWhole : 0);
    const points = Math.abs(share) < 0.05 ? "±0" : (share > 0 ? "+" : "−") +
      Math.abs(share).toFixed(1);
    return FV.format.signed(after - before) + " (" + points + " pts)";
  }

  FV.TopTable = TopTable;
})(window.flamedViewer = window.flamedViewer || {});
