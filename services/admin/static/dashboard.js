/* latfarm admin dashboard: draws the plots from /admin/api/... (Chart.js, bundled locally). */
(function () {
  "use strict";
  const root = document.getElementById("latfarm-charts");
  if (!root || typeof Chart === "undefined") return;
  const api = root.dataset.api;
  const charts = {};
  const latest = {}; // chart name -> number of its newest request: older answers arriving late are dropped
  const BLUE = "rgba(32, 107, 196, 0.85)";
  const LIGHT = "rgba(32, 107, 196, 0.25)";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  const $ = (id) => document.getElementById(id);
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v.toPrecision(3));

  async function getJSON(path) {
    const response = await fetch(api + path, { credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  /* Data for one chart; resolves to null when a newer request for the same chart was made meanwhile. */
  async function chartData(name, path) {
    const ticket = (latest[name] = (latest[name] || 0) + 1);
    const body = await getJSON(path);
    return ticket === latest[name] ? body : null;
  }

  /* Show a chart, or a message in its place. */
  function show(name, config, text) {
    const canvas = $("chart-" + name);
    const message = $(name + "-message");
    if (charts[name]) charts[name].destroy();
    delete charts[name];
    canvas.parentElement.hidden = !config;
    message.hidden = !text;
    message.textContent = text || "";
    if (config) {
      charts[name] = new Chart(canvas, config);
      canvas.dataset.rendered = "1";
    }
  }

  // A log axis from the power of ten below the smallest value (Chart.js would start bars near 0.1 ms).
  const logAxis = (title, values) => ({
    type: "logarithmic", title: { display: true, text: title },
    min: values && values.length ? 10 ** Math.floor(Math.log10(Math.min(...values))) : undefined,
  });

  async function drawDistribution(onPick) {
    const rows = await getJSON("/distribution");
    if (!rows.length) return show("distribution", null, "No measurements yet.");
    $("distribution-box").style.height = Math.max(200, rows.length * 26 + 60) + "px";
    const bar = (label, lo, hi, color, width) => ({
      label, data: rows.map((r) => [r[lo], r[hi]]), backgroundColor: color, grouped: false, barPercentage: width,
    });
    show("distribution", {
      type: "bar",
      data: {
        labels: rows.map((r) => r.device),
        datasets: [
          bar("5–95 %", "p5", "p95", LIGHT, 0.35),
          bar("25–75 %", "p25", "p75", BLUE, 0.8),
          { label: "median", data: rows.map((r) => [r.median / 1.02, r.median * 1.02]), backgroundColor: "#1a1a1a",
            grouped: false, barPercentage: 0.8 },
        ],
      },
      options: {
        indexAxis: "y",
        scales: { x: logAxis("latency (ms)", rows.map((r) => r.p5)) },
        plugins: { tooltip: { callbacks: { afterBody: (items) => {
          const r = rows[items[0].dataIndex];
          return `median ${fmt(r.median)} ms · ${r.count} measurements`;
        } } } },
        onClick: (_event, elements) => elements.length && onPick(rows[elements[0].index].device_id),
      },
    });
  }

  async function drawHistogram(device) {
    const h = await chartData("histogram", "/histogram?device=" + device);
    if (!h) return;
    $("histogram-title").textContent = `Latency histogram: ${h.device} (${h.count} measurements)`;
    if (!h.counts.length) return show("histogram", null, "No positive latencies on this device.");
    const labels = h.counts.map((_c, i) => fmt(Math.sqrt(h.edges[i] * h.edges[i + 1])));
    const note = h.non_positive ? ` (${h.non_positive} non-positive values left out)` : "";
    show("histogram", {
      type: "bar",
      data: { labels, datasets: [{ label: "archs" + note, data: h.counts, backgroundColor: BLUE, barPercentage: 1,
        categoryPercentage: 1 }] },
      options: { scales: { x: { title: { display: true, text: "latency (ms), log bins" } },
        y: { title: { display: true, text: "archs" }, beginAtZero: true, ticks: { precision: 0 } } } },
    }, null);
  }

  /* The space switch of the scatter panel: shown when the device has data of more than one search space. */
  function showSpaces(s) {
    const pick = $("scatter-space");
    if (!pick) return;
    pick.replaceChildren(...s.spaces.map((name) => new Option(name, name, false, name === s.space)));
    pick.hidden = s.spaces.length < 2;
  }

  async function drawScatter(device, space) {
    const query = "/scatter?device=" + device + (space ? "&space=" + encodeURIComponent(space) : "");
    const s = await chartData("scatter", query);
    if (!s) return;
    showSpaces(s);
    const what = s.spaces.length > 1 ? `${s.device} (${s.space})` : s.device;
    if (!s.available) {
      $("scatter-title").textContent = `Measured vs predicted: ${what}`;
      return show("scatter", null, s.reason);
    }
    const rho = s.spearman_rho === null ? "n/a" : s.spearman_rho.toFixed(3);
    $("scatter-title").textContent = `Measured vs predicted: ${what}, Spearman ρ = ${rho} over ${s.count} archs`;
    const points = s.points.filter((p) => p.measured > 0 && p.predicted > 0);
    const values = points.flatMap((p) => [p.measured, p.predicted]);
    const lo = Math.min(...values), hi = Math.max(...values);
    show("scatter", {
      type: "scatter",
      data: { datasets: [
        { label: `archs (${points.length} shown)`, data: points.map((p) => ({ x: p.measured, y: p.predicted })),
          backgroundColor: BLUE, pointRadius: 2 },
        { type: "line", label: "y = x", data: [{ x: lo, y: lo }, { x: hi, y: hi }], borderColor: "#d63939",
          borderWidth: 1, pointRadius: 0 },
      ] },
      options: { scales: { x: logAxis("measured (ms)"), y: logAxis("predicted (ms)") } },
    });
  }

  async function drawArch(query) {
    let a;
    try {
      a = await chartData("arch", "/arch?arch=" + encodeURIComponent(query || ""));
    } catch (err) { // 422 malformed arch, 404 no measurements of it: the message says which
      $("arch-title").textContent = "";
      return show("arch", null, err.message);
    }
    if (!a) return;
    $("arch-title").textContent = `${a.space} #${a.index ?? "?"}  ${a.arch}`;
    $("arch-box").style.height = Math.max(200, a.devices.length * 24 + 60) + "px";
    show("arch", {
      type: "bar",
      data: { labels: a.devices.map((d) => d.device),
        datasets: [{ label: "latency_ms, mean over the arch's measurements on each device",
          data: a.devices.map((d) => d.mean_ms), backgroundColor: BLUE }] },
      options: { indexAxis: "y", scales: { x: logAxis("latency_ms (ms)", a.devices.map((d) => d.mean_ms)) } },
    });
  }

  function report(name) {
    return (err) => show(name, null, "Could not load: " + err.message);
  }

  const select = $("device-select");
  function drawDevice(device) {
    if (!device) {
      show("histogram", null, "No measurements yet.");
      show("scatter", null, "No measurements yet.");
      return;
    }
    drawHistogram(device).catch(report("histogram"));
    drawScatter(device).catch(report("scatter"));
    const link = $("device-link");
    if (link) link.href = api.replace(/api$/, "") + "device-overview/" + device;
  }

  /* The fleet cards follow the agents and the queue without a reload. */
  async function refreshFleet() {
    const f = await getJSON("/fleet");
    const q = f.queue, t = f.throughput;
    $("agents-online").textContent = `${f.agents_online} online`;
    $("agents-offline").textContent = `${f.agents_offline} offline · heartbeat within ${Math.round(f.online_window_s)} s`;
    $("queue-depth").textContent = `${q.queued - f.waiting_for_agent} queued`;
    $("queue-waiting").textContent = `${f.waiting_for_agent} waiting for an agent (none online for their device)`;
    $("queue-states").textContent = `${q.running} running · ${q.done} done · ${q.failed} failed · ${q.cancelled} cancelled`;
    $("throughput").textContent = `${t.jobs_done_1h} jobs / h`;
    $("throughput-24h").textContent = `${t.jobs_done_24h} done and ${t.jobs_failed_24h} failed in 24 h`;
  }

  const spacePick = $("scatter-space");
  if (spacePick) {
    spacePick.addEventListener("change", () => {
      const device = select ? select.value : root.dataset.device;
      drawScatter(device, spacePick.value).catch(report("scatter"));
    });
  }

  if (select) {
    setInterval(() => refreshFleet().catch(() => {}), 15000); // on failure the cards keep their values; next tick retries
    select.addEventListener("change", () => drawDevice(select.value));
    const pick = (id) => { select.value = String(id); drawDevice(select.value); };
    drawDistribution(pick).catch(report("distribution"));
    drawDevice(select.value);
    $("arch-form").addEventListener("submit", (event) => {
      event.preventDefault();
      drawArch($("arch-input").value).catch(report("arch"));
    });
    drawArch("").catch(report("arch"));
  } else {
    drawDevice(root.dataset.device);
  }
})();
