// A device's telemetry chart: one field over a time range, from the API (the page's session
// cookie signs the requests), then live: new values arrive over the realtime socket as the
// device pushes, and are appended without a reload.
(() => {
  const box = document.getElementById("chart");
  const controls = document.getElementById("chart-controls");
  const status = document.getElementById("chart-status");
  if (!box || !controls) return;
  const device = box.dataset.device;
  let plot = null;
  let xs = [];
  let ys = [];

  const field = () => controls.elements.field.value;
  const show = () => {
    box.dataset.points = String(xs.length);
    const data = [xs, ys];
    if (plot) { plot.setData(data); return; }
    const width = Math.max(300, box.clientWidth);
    plot = new uPlot({ width, height: 280, series: [{}, { label: field(), stroke: "#1f5fbf" }] },
                     data, box);
  };

  async function load() {
    const since = Math.floor(Date.now() / 1000) - Number(controls.elements.range.value);
    const params = new URLSearchParams({ field: field(), since: String(since), limit: "10000" });
    if (controls.elements.every.value) params.set("every", controls.elements.every.value);
    const answer = await fetch(`/api/v1/devices/${device}/telemetry?${params}`,
                               { credentials: "same-origin" });
    if (!answer.ok) { status.textContent = `Could not load: ${answer.status}`; return; }
    const page = await answer.json();
    const points = page.points.filter((p) => typeof p.value === "number");
    xs = points.map((p) => p.ts);
    ys = points.map((p) => p.value);
    if (plot) { plot.destroy(); plot = null; }
    show();
    status.textContent = `${xs.length} values of ${field()}`;
  }

  // The latest values table follows too: each field's row takes the new value and time.
  function showLatest(latest) {
    const table = document.querySelector("#latest tbody");
    if (!table) return;
    for (const [name, reading] of Object.entries(latest)) {
      let row = [...table.rows].find((r) => r.dataset.field === name);
      if (!row) {
        row = table.insertRow();
        row.dataset.field = name;
        row.insertCell().textContent = name;
        row.insertCell().className = "value";
        row.insertCell().className = "at";
      }
      row.querySelector(".value").textContent =
        typeof reading.value === "object" ? JSON.stringify(reading.value) : String(reading.value);
      const at = document.createElement("time");
      at.setAttribute("datetime", new Date(reading.ts * 1000).toISOString());
      row.querySelector(".at").replaceChildren(at);
      if (window.tetherLocalTimes) window.tetherLocalTimes(row);
    }
  }

  function follow() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/realtime`);
    socket.onopen = () => socket.send(JSON.stringify(
      { op: "events", id: 1, types: ["telemetry:created"] }));
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.op !== "event" || frame.id !== device) return;
      showLatest(frame.document.latest || {});
      if (controls.elements.every.value) return;
      const reading = (frame.document.latest || {})[field()];
      if (!reading || typeof reading.value !== "number") return;
      xs.push(reading.ts);
      ys.push(reading.value);
      show();
      status.textContent = `${xs.length} values of ${field()} (live)`;
    };
    socket.onclose = () => setTimeout(follow, 2000);
  }

  controls.addEventListener("change", load);
  load().then(follow);
})();
