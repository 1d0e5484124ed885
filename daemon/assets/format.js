// flamed's viewer, formats: counts, shares and times, every time in one zone (local time with
// its UTC offset, or UTC) that the page names on screen. No DOM: Node runs it in the tests.
(function (FV) {
  "use strict";

  const pad = (n) => String(n).padStart(2, "0");

  // 5744 -> "5,744"; fractions (from normalised profiles) keep one decimal.
  function count(value) {
    const rounded = Number.isInteger(value) ? value : Math.round(value * 10) / 10;
    const [whole, fraction] = String(Math.abs(rounded)).split(".");
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (rounded < 0 ? "−" : "") + grouped + (fraction ? "." + fraction : "");
  }

  function samples(value) {
    return count(value) + (value === 1 ? " sample" : " samples");
  }

  function signed(value) {
    return (value > 0 ? "+" : "") + count(value);
  }

  // part of whole as "34.2%", "<0.1%" for a sliver, "0%" for none.
  function percent(part, whole) {
    if (!(whole > 0) || !part) {
      return "0%";
    }
    const share = (100 * part) / whole;
    if (Math.abs(share) < 0.1) {
      return share > 0 ? "<0.1%" : "−<0.1%";
    }
    return (share < 0 ? "−" : "") + Math.abs(share).toFixed(share >= 99.95 ? 0 : 1) + "%";
  }

  // "UTC+05:30" for a local time's offset (of that instant: summer time moves it).
  function offset(date) {
    const minutes = -date.getTimezoneOffset();
    const sign = minutes < 0 ? "−" : "+";
    const abs = Math.abs(minutes);
    return "UTC" + sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  function parts(unix, utc) {
    const date = new Date(unix * 1000);
    if (utc) {
      return {date, y: date.getUTCFullYear(), mo: date.getUTCMonth() + 1, d: date.getUTCDate(),
        h: date.getUTCHours(), mi: date.getUTCMinutes(), s: date.getUTCSeconds()};
    }
    return {date, y: date.getFullYear(), mo: date.getMonth() + 1, d: date.getDate(),
      h: date.getHours(), mi: date.getMinutes(), s: date.getSeconds()};
  }

  function zoneOf(unix, utc) {
    return utc ? "UTC" : offset(new Date(unix * 1000));
  }

  // "2025-01-02 14:03:05 UTC+01:00" (or "... UTC").
  function time(unix, utc) {
    const p = parts(unix, utc);
    return p.y + "-" + pad(p.mo) + "-" + pad(p.d) + " " + pad(p.h) + ":" + pad(p.mi) + ":" +
      pad(p.s) + " " + zoneOf(unix, utc);
  }

  // "14:03:05" or "14:03" (the zone is said elsewhere on the screen).
  function clock(unix, utc, seconds) {
    const p = parts(unix, utc);
    return pad(p.h) + ":" + pad(p.mi) + (seconds ? ":" + pad(p.s) : "");
  }

  // "01-02 14:03" for axes that span days.
  function dayClock(unix, utc) {
    const p = parts(unix, utc);
    return pad(p.mo) + "-" + pad(p.d) + " " + pad(p.h) + ":" + pad(p.mi);
  }

  // A range, the second time without its date when both fall on the same day.
  function range(from, until, utc) {
    const first = time(from, utc);
    const second = time(until, utc);
    return first.slice(0, 10) === second.slice(0, 10) && zoneOf(from, utc) === zoneOf(until, utc)
      ? first.slice(0, 19) + " to " + second.slice(11) : first + " to " + second;
  }

  // How the page names its zone: "UTC" or "local time (UTC+01:00)".
  function zoneName(utc, now) {
    return utc ? "UTC" : "local time (" + offset(new Date((now || Date.now() / 1000) * 1000)) + ")";
  }

  // The value of an <input type="datetime-local"> for unix seconds, in the page's zone.
  function inputValue(unix, utc) {
    if (!isFinite(unix)) {
      return "";
    }
    const p = parts(Math.round(unix), utc);
    return p.y + "-" + pad(p.mo) + "-" + pad(p.d) + "T" + pad(p.h) + ":" + pad(p.mi) + ":" +
      pad(p.s);
  }

  // Unix seconds for such a value read in the page's zone; NaN for an empty or bad one.
  function fromInput(value, utc) {
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?$/.test(value || "")) {
      return NaN;
    }
    const ms = new Date(value + (value.length === 16 ? ":00" : "") + (utc ? "Z" : "")).getTime();
    return Math.round(ms / 1000);
  }

  const UNITS = {ms: 0.001, s: 1, m: 60, h: 3600, d: 86400};

  // "1h30m" -> 5400 (the daemon's durations); NaN when it is not one.
  function seconds(text) {
    if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(text || "")) {
      return NaN;
    }
    return text.match(/\d+(?:\.\d+)?(?:ms|s|m|h|d)/g).reduce((sum, part) => {
      const unit = /ms$/.test(part) ? "ms" : part.slice(-1);
      return sum + parseFloat(part) * UNITS[unit];
    }, 0);
  }

  // 90 -> "1m 30s", 7200 -> "2h".
  function duration(total) {
    if (!(total > 0)) {
      return "0s";
    }
    const d = Math.floor(total / 86400);
    const h = Math.floor((total % 86400) / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = Math.round(total % 60);
    const out = [[d, "d"], [h, "h"], [m, "m"], [s, "s"]].filter(([n]) => n > 0);
    return out.slice(0, 2).map(([n, unit]) => n + unit).join(" ") || "0s";
  }

  FV.format = {count, samples, signed, percent, offset, time, clock, dayClock, range, zoneName,
    inputValue, fromInput, seconds, duration};
})(typeof module === "object" && module.exports ? module.exports
  : (window.flamedViewer = window.flamedViewer || {}));
