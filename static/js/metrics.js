// Usage graphs (uPlot): the history from the API for the chosen range, then each new sample as it is
// collected, pushed over the page's one WebSocket (live.js subscribes to the objects marked
// data-metrics and re-dispatches every message as a "webvirt:event").
//
// Each chart spans the whole range (its right edge is now), so a gap or a short history reads as one.
// Its legend shows the latest figures, or those under the pointer. Live samples are the 1h range's own
// resolution; the longer ranges (averages over a minute or more) are fetched again every minute.

const HEIGHT = 180;
const REFRESH_MS = 60_000;
const RANGE_SECONDS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "1y": 365 * 86400 };
const BLUE = "#2f6fde";
const ORANGE = "#d9822b";
const GREY = "#8a94a6";
const STACK = [BLUE, ORANGE, "#2e9e5b", "#a14fd1", "#c73e3e", "#178a94", "#8a6d1d", "#5b6475", "#d14f8f", "#4f7d1d"];

// Each chart: its key (figure[data-chart]), title, unit, and series [name, label, colour, dashed].
const CHARTS = {
  d: [
    { key: "cpu_percent", title: "CPU · % of its vCPUs", unit: "%", series: [["cpu_percent", "CPU", BLUE]] },
    { key: "memory_mib", title: "Memory", unit: "MiB",
      series: [["memory_mib", "in use on the host", BLUE], ["balloon_mib", "assigned to the guest", GREY, true]] },
    { key: "disk_read_bps", title: "Disk throughput", unit: "B/s",
      series: [["disk_read_bps", "read", BLUE], ["disk_write_bps", "written", ORANGE]] },
    { key: "disk_read_iops", title: "Disk operations", unit: "/s",
      series: [["disk_read_iops", "reads", BLUE], ["disk_write_iops", "writes", ORANGE]] },
    { key: "net_rx_bps", title: "Network", unit: "B/s",
      series: [["net_rx_bps", "received", BLUE], ["net_tx_bps", "sent", ORANGE]] },
  ],
  h: [
    { key: "cpu_percent", title: "CPU · % of all its CPUs", unit: "%", series: [["cpu_percent", "busy", BLUE]] },
    { key: "memory_mib", title: "Memory", unit: "MiB",
      series: [["memory_mib", "used", BLUE], ["memory_total_mib", "total", GREY, true]] },
  ],
};

// Numbers -----------------------------------------------------------------------------------------

function short(value) {
  const abs = Math.abs(value);
  const text = value.toFixed(abs >= 100 || abs === 0 ? 0 : abs >= 10 ? 1 : 2);
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

// A figure in its unit: bytes per second in decimal steps (kB/s, MB/s), memory in binary (MiB, GiB).
function human(value, unit) {
  if (value == null || Number.isNaN(value)) return "—";
  if (unit === "%") return `${short(value)}%`;
  if (unit === "MiB") {
    const units = ["MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return `${short(value)} ${units[i]}`;
  }
  const units = unit === "B/s" ? ["B/s", "kB/s", "MB/s", "GB/s"] : ["/s", "k/s", "M/s"];
  let i = 0;
  while (Math.abs(value) >= 1000 && i < units.length - 1) { value /= 1000; i += 1; }
  return `${short(value)} ${units[i]}`;
}

const two = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function clock(t, seconds) {
  const d = new Date(t * 1000);
  return `${two(d.getHours())}:${two(d.getMinutes())}${seconds ? `:${two(d.getSeconds())}` : ""}`;
}

function day(t) {
  const d = new Date(t * 1000);
  return `${d.getDate()} ${MONTHS[d.getMonth()]}`;
}

// Time axis labels: the time of day within a day, the day (and time) over a week, the day or month beyond.
function timeTicks(span) {
  return (u, ticks, _axis, _space, incr) => ticks.map((t) => {
    if (span <= 86400) return clock(t, incr < 60);
    if (incr < 86400) return `${day(t)}\n${clock(t)}`;
    if (span <= 31 * 86400) return day(t);
    const d = new Date(t * 1000);
    return d.getDate() === 1 ? `${MONTHS[d.getMonth()]} ${d.getFullYear()}` : day(t);
  });
}

// Memory ticks on powers of two (512 MiB, 1 GiB, 2 GiB…); the others on uPlot's decimal steps.
const BINARY_INCRS = Array.from({ length: 40 }, (_, i) => 2 ** (i - 4));

// Charts ------------------------------------------------------------------------------------------

function lastIndex(data) {
  for (let i = data[0].length - 1; i >= 0; i -= 1) {
    if (data.slice(1).some((column) => column[i] != null)) return i;
  }
  return null;
}

// The legend: the latest figures while the pointer is elsewhere.
function showLatest(u) {
  if (u.cursor.left >= 0) return;
  const idx = lastIndex(u.data);
  if (idx != null) u.setLegend({ idx }, false);
}

// The range's right edge is now; its left edge the range's start, or, while the history is shorter,
// its first figure (but at least 30 steps back), so a young domain's figures are not a sliver.
function timeRange(span, step) {
  const least = Math.min(span, 30 * step);
  return (u, min) => {
    const now = Date.now() / 1000;
    return [Math.max(now - span, Math.min(min ?? now, now - least)), now];
  };
}

// No scale on an empty chart; a bare 0 under GiB and MiB ticks.
function axisLabel(u, value, unit) {
  if (!hasFigures(u.data)) return "";
  return value === 0 && unit === "MiB" ? "0" : human(value, unit);
}

function options(spec, width, span, step, raw) {
  return {
    width, height: HEIGHT,
    padding: [12, 20, 0, 4],
    legend: { live: true },
    cursor: { points: { size: 6 } },
    scales: {
      x: { time: true, range: timeRange(span, step) },
      y: { range: (u, min, max) => [0, spec.unit === "%" ? 100 : Math.max(spec.unit === "MiB" ? 64 : 1, (max || 0) * 1.15)] },
    },
    axes: [
      { values: timeTicks(span), stroke: "#667085", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e3e6eb" } },
      { values: (u, ticks) => ticks.map((v) => axisLabel(u, v, spec.unit)), stroke: "#667085",
        grid: { stroke: "#eef0f3" }, ticks: { show: false }, incrs: spec.unit === "MiB" ? BINARY_INCRS : undefined,
        size: (u, values) => Math.max(40, values ? Math.max(...values.map((v) => v.length)) * 7 + 14 : 48) },
    ],
    series: [
      { label: "at", value: (u, t) => (t == null ? "—" : `${span > 86400 ? `${day(t)} ` : ""}${clock(t, span <= 3600)}`) },
      ...spec.series.map(([, label, colour, dashed], i) => ({
        label, stroke: colour, width: dashed ? 1.25 : 1.75, dash: dashed ? [5, 4] : undefined,
        points: { size: 4 },
        fill: spec.stacked ? `${colour}40` : undefined,
        value: raw ? (u, v, sidx, idx) => human(idx == null ? null : raw[i][idx], spec.unit)
          : (u, v) => human(v, spec.unit),
      })),
    ],
    bands: spec.stacked ? spec.series.slice(1).map((_, i) => ({ series: [i + 2, i + 1] })) : undefined,
    hooks: { setLegend: [showLatest] },
  };
}

function hasFigures(data) {
  return data.slice(1).some((column) => column.some((v) => v != null));
}

class Graphs {
  constructor(section) {
    this.section = section;
    [this.kind, this.id] = section.dataset.metrics.split(":");
    this.url = section.dataset.metricsUrl;
    this.box = section.querySelector(".charts");
    this.empty = section.querySelector("[data-metrics-empty]");
    this.failed = section.querySelector("[data-metrics-error]");
    this.stepNote = section.querySelector("[data-metrics-step]");
    this.range = "1h";
    this.charts = [];
    this.timer = null;
    this.reloading = false;
    for (const button of section.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => this.load(button.dataset.range));
    }
    document.addEventListener("webvirt:event", (e) => this.live(e.detail));
    new ResizeObserver(() => this.resize()).observe(this.box);
  }

  async load(range) {
    this.range = range;
    for (const button of this.section.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === range));
    }
    clearInterval(this.timer);
    this.timer = range === "1h" ? null : setInterval(() => this.fetch(range), REFRESH_MS);
    await this.fetch(range);
  }

  async fetch(range) {
    let answer;
    try {
      const response = await fetch(`${this.url}?range=${range}`, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      answer = await response.json();
    } catch (error) {
      this.failed.hidden = false;
      this.failed.textContent = `The usage figures could not be loaded: ${error.message}.`;
      return;
    }
    if (range !== this.range) return; // another range was chosen meanwhile
    this.failed.hidden = true;
    this.draw(answer);
  }

  draw(answer) {
    this.charts.forEach((c) => c.plot.destroy());
    this.box.innerHTML = "";
    this.charts = [];
    const span = RANGE_SECONDS[answer.range] || 3600;
    const specs = [...CHARTS[this.kind]];
    if (answer.top && answer.top.length) {
      specs.push({ key: "top", title: "Busiest domains · % of the host's CPUs, stacked", unit: "%", stacked: true,
        wide: true, series: answer.top.map((d, i) => [`top:${d.id}`, d.name, STACK[i % STACK.length]]) });
    }
    const empty = Object.values(answer.series).every((points) => points.length === 0);
    this.empty.hidden = !empty;
    this.box.hidden = empty;
    this.stepNote.textContent = answer.range === "1h" ? `a point every ${answer.step} s, live`
      : `averages over ${answer.step >= 3600 ? `${answer.step / 3600} h` : `${answer.step / 60} min`}`;
    for (const spec of specs) {
      const figure = document.createElement("figure");
      figure.dataset.chart = spec.key;
      figure.classList.toggle("wide", !!spec.wide);
      const caption = document.createElement("figcaption");
      caption.textContent = spec.title;
      const note = document.createElement("p");
      note.className = "chart-empty";
      note.textContent = "No figures in this range";
      figure.append(caption, note);
      this.box.appendChild(figure);
      let data;
      let raw = null;
      if (spec.stacked) [data, raw] = stackedData(answer.top);
      else data = seriesData(answer.series, spec.series.map(([n]) => n));
      const plot = new uPlot(options(spec, this.widthOf(figure), span, answer.step, raw), data, figure);
      note.hidden = hasFigures(data);
      figure.dataset.points = String(data[0].length);
      showLatest(plot);
      this.charts.push({ spec, plot, data, figure, note });
    }
    this.section.dataset.range = answer.range;
  }

  live(ev) {
    if (ev.type !== "metrics" || `${ev.kind}:${ev.id}` !== this.section.dataset.metrics) return;
    this.section.dataset.samples = String(Number(this.section.dataset.samples || 0) + 1);
    if (this.range !== "1h") return; // the longer ranges are averages: fetched again every minute
    if (this.box.hidden) { // the first figures of an empty range: draw the charts
      if (!this.reloading) {
        this.reloading = true;
        this.fetch(this.range).finally(() => { this.reloading = false; });
      }
      return;
    }
    for (const chart of this.charts) {
      if (chart.spec.stacked) continue;
      const [xs, ...ys] = chart.data;
      if (xs.length && xs[xs.length - 1] >= ev.t) continue;
      xs.push(ev.t);
      chart.spec.series.forEach(([name], i) => ys[i].push(ev.values[name] ?? null));
      while (xs[0] < ev.t - RANGE_SECONDS["1h"]) { // an open page keeps its hour, not every sample since
        xs.shift();
        ys.forEach((column) => column.shift());
      }
      chart.plot.setData(chart.data);
      showLatest(chart.plot);
      chart.note.hidden = hasFigures(chart.data);
      chart.figure.dataset.points = String(xs.length);
    }
  }

  widthOf(figure) { return Math.max(240, Math.floor(figure.clientWidth)); }

  resize() {
    for (const chart of this.charts) {
      const width = this.widthOf(chart.figure);
      if (width !== chart.plot.width) chart.plot.setSize({ width, height: HEIGHT });
    }
  }
}

function seriesData(series, names) {
  const times = [...new Set(names.flatMap((n) => (series[n] || []).map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = names.map(() => times.map(() => null));
  names.forEach((n, i) => (series[n] || []).forEach(([t, avg]) => { columns[i][index.get(t)] = avg; }));
  return [times, ...columns];
}

// Each domain's band sits on the ones before it; the legend shows each domain's own share (`raw`).
function stackedData(top) {
  const names = top.map((d) => `top:${d.id}`);
  const series = Object.fromEntries(top.map((d) => [`top:${d.id}`, d.cpu_host_percent]));
  const [times, ...raw] = seriesData(series, names);
  const columns = raw.map((column) => [...column]);
  for (let i = 1; i < columns.length; i += 1) {
    columns[i] = columns[i].map((v, j) => (v == null && columns[i - 1][j] == null ? null : (v ?? 0) + (columns[i - 1][j] ?? 0)));
  }
  return [[times, ...columns], raw];
}

for (const section of document.querySelectorAll("[data-metrics]")) new Graphs(section).load("1h");
