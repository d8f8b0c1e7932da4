// Usage graphs (uPlot): the history from the API for the chosen range, then each new sample as it is
// collected, pushed over the page's one WebSocket (live.js subscribes to the objects marked
// data-metrics and re-dispatches every message as a "webvirt:event").

const CHARTS = {
  d: [
    { title: "CPU (% of its vCPUs)", unit: "%", series: [["cpu_percent", "CPU"]] },
    { title: "Memory (MiB)", unit: "MiB", series: [["memory_mib", "used on the host"], ["balloon_mib", "balloon"]] },
    { title: "Disk (bytes/s)", unit: "B/s", series: [["disk_read_bps", "read"], ["disk_write_bps", "write"]] },
    { title: "Disk (operations/s)", unit: "IOPS", series: [["disk_read_iops", "reads"], ["disk_write_iops", "writes"]] },
    { title: "Network (bytes/s)", unit: "B/s", series: [["net_rx_bps", "received"], ["net_tx_bps", "sent"]] },
  ],
  h: [
    { title: "CPU (% of all CPUs)", unit: "%", series: [["cpu_percent", "CPU"]] },
    { title: "Memory (MiB)", unit: "MiB", series: [["memory_mib", "used"], ["memory_total_mib", "total"]] },
  ],
};
const COLOURS = ["#2f6fde", "#d9822b", "#2e9e5b", "#a14fd1", "#c73e3e", "#178a94", "#8a6d1d", "#5b6475", "#d14f8f", "#4f7d1d"];

function human(value, unit) {
  if (value == null) return "—";
  if (unit === "B/s") {
    const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
    let i = 0;
    while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return `${value.toFixed(value < 10 && i ? 1 : 0)} ${units[i]}`;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)}${unit === "%" ? "%" : ` ${unit}`}`;
}

function options(spec, width, stacked) {
  return {
    title: spec.title, width, height: 170,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(spec.unit === "%" ? 100 : 1, max * 1.1)] } },
    axes: [{}, { size: 64, values: (u, ticks) => ticks.map((v) => human(v, spec.unit)) }],
    series: [{}, ...spec.series.map(([, label], i) => ({
      label, stroke: COLOURS[i % COLOURS.length], width: 1.5, value: (u, v) => human(v, spec.unit),
      fill: stacked ? `${COLOURS[i % COLOURS.length]}33` : undefined,
    }))],
  };
}

class Graphs {
  constructor(section) {
    this.section = section;
    [this.kind, this.id] = section.dataset.metrics.split(":");
    this.url = section.dataset.metricsUrl;
    this.range = "1h";
    this.charts = [];
    for (const button of section.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => this.load(button.dataset.range));
    }
    document.addEventListener("webvirt:event", (e) => this.live(e.detail));
    new ResizeObserver(() => this.resize()).observe(section);
  }

  width() { return Math.max(280, Math.floor((this.section.querySelector(".charts").clientWidth - 16) / 2)); }

  async load(range) {
    this.range = range;
    for (const button of this.section.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === range));
    }
    const response = await fetch(`${this.url}?range=${range}`, { credentials: "same-origin" });
    if (!response.ok) return;
    this.draw(await response.json());
  }

  draw(answer) {
    const box = this.section.querySelector(".charts");
    this.charts.forEach((c) => c.plot.destroy());
    box.innerHTML = "";
    this.charts = [];
    const specs = [...CHARTS[this.kind]];
    if (answer.top && answer.top.length) {
      specs.push({ title: "Busiest domains (% of the host's CPUs, stacked)", unit: "%", stacked: true,
        series: answer.top.map((d) => [`top:${d.id}`, d.name]) });
    }
    const empty = Object.values(answer.series).every((points) => points.length === 0);
    this.section.querySelector("[data-metrics-empty]").hidden = !empty;
    for (const spec of specs) {
      const figure = document.createElement("figure");
      figure.dataset.chart = spec.series[0][0];
      box.appendChild(figure);
      const data = spec.stacked ? stackedData(answer.top) : seriesData(answer.series, spec.series.map(([n]) => n));
      const plot = new uPlot(options(spec, this.width(), spec.stacked), data, figure);
      this.charts.push({ spec, plot, data });
    }
  }

  live(ev) {
    if (ev.type !== "metrics" || `${ev.kind}:${ev.id}` !== this.section.dataset.metrics) return;
    this.section.querySelector("[data-metrics-empty]").hidden = true;
    for (const chart of this.charts) {
      if (chart.spec.stacked) continue;
      const [xs, ...ys] = chart.data;
      if (xs.length && xs[xs.length - 1] >= ev.t) continue;
      xs.push(ev.t);
      chart.spec.series.forEach(([name], i) => ys[i].push(ev.values[name] ?? null));
      chart.plot.setData(chart.data);
    }
    this.section.dataset.samples = String(Number(this.section.dataset.samples || 0) + 1);
  }

  resize() { this.charts.forEach((c) => c.plot.setSize({ width: this.width(), height: 170 })); }
}

function seriesData(series, names) {
  const times = [...new Set(names.flatMap((n) => (series[n] || []).map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = names.map(() => times.map(() => null));
  names.forEach((n, i) => (series[n] || []).forEach(([t, avg]) => { columns[i][index.get(t)] = avg; }));
  return [times, ...columns];
}

function stackedData(top) {
  const names = top.map((d) => `top:${d.id}`);
  const series = Object.fromEntries(top.map((d) => [`top:${d.id}`, d.cpu_host_percent]));
  const [times, ...columns] = seriesData(series, names);
  for (let i = 1; i < columns.length; i += 1) {
    columns[i] = columns[i].map((v, j) => (v ?? 0) + (columns[i - 1][j] ?? 0));
  }
  return [times, ...columns];
}

for (const section of document.querySelectorAll("[data-metrics]")) new Graphs(section).load("1h");
