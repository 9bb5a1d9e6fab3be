// Herald dashboard: plain JavaScript, no dependencies. Charts are drawn on <canvas>.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (response.status === 401) { location.href = "/dashboard/login"; throw new Error("signed out"); }
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}
const post = (path, body) => api(path, {
  method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}),
});

// Tabs follow the URL fragment.
function show() {
  const tab = location.hash.slice(1) || "overview";
  document.querySelectorAll("section").forEach((s) => s.classList.toggle("active", s.id === tab));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.hash === "#" + tab));
  if (tab === "apps") loadApps();
}
window.addEventListener("hashchange", show);

// A line chart of one or more series over time.
function chart(canvas, series, colours) {
  const c = canvas.getContext("2d"), w = canvas.width, h = canvas.height, pad = 28;
  c.clearRect(0, 0, w, h);
  const all = series.flat();
  const max = Math.max(1, ...all.map((p) => p[1]));
  const t0 = Math.min(...all.map((p) => p[0]), Date.now() - 60000), t1 = Date.now();
  c.strokeStyle = "#ccd"; c.fillStyle = "#667"; c.font = "11px system-ui";
  c.beginPath(); c.moveTo(pad, 4); c.lineTo(pad, h - pad); c.lineTo(w - 4, h - pad); c.stroke();
  c.fillText(max.toFixed(max < 10 ? 1 : 0), 2, 12); c.fillText("0", 2, h - pad);
  c.fillText(new Date(t0).toLocaleTimeString(), pad, h - 8);
  c.fillText("now", w - 28, h - 8);
  series.forEach((points, i) => {
    c.strokeStyle = colours[i]; c.lineWidth = 2; c.beginPath();
    points.forEach(([t, v], j) => {
      const x = pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad - 4);
      const y = h - pad - (v / max) * (h - pad - 6);
      j ? c.lineTo(x, y) : c.moveTo(x, y);
    });
    c.stroke();
  });
}

// Per-second rates between consecutive samples.
const rate = (samples, key) => samples.slice(1).map((s, i) => {
  const dt = (s.time_ms - samples[i].time_ms) / 1000 || 1;
  return [s.time_ms, Math.max(0, (s[key] - samples[i][key]) / dt)];
});

let last = null;
async function loadOverview() {
  const o = await api("/admin/overview");
  const samples = o.history.concat([o.now]);
  const per = (key) => last ? Math.max(0, (o.now[key] - last[key]) / ((o.now.time_ms - last.time_ms) / 1000 || 1)) : 0;
  const cards = [
    ["Connections", o.now.connections], ["Messages/s", per("delivered").toFixed(1)],
    ["API calls/s", per("http_requests").toFixed(1)], ["Webhooks sent", o.now.webhooks_delivered],
    ["Webhooks failed", o.now.webhooks_failed], ["Status", o.ready],
  ];
  if (o.node) cards.push(["Node", o.node + " (+" + o.peers + " peers)"]);
  $("cards").innerHTML = cards.map(([k, v]) => `<div class="card">${esc(k)}<b>${esc(v)}</b></div>`).join("");
  last = o.now;
  chart($("chart-connections"), [samples.map((s) => [s.time_ms, s.connections])], ["#2b6cb0"]);
  chart($("chart-delivered"), [rate(samples, "delivered")], ["#2f855a"]);
  chart($("chart-http"), [rate(samples, "http_requests")], ["#6b46c1"]);
  chart($("chart-webhooks"), [rate(samples, "webhooks_delivered"), rate(samples, "webhooks_failed")], ["#2f855a", "#c53030"]);
}

async function loadApps() {
  const { apps } = await api("/admin/apps");
  const options = apps.map((a) => `<option value="${esc(a.id)}">${esc(a.id)} (${esc(a.key)})</option>`).join("");
  document.querySelectorAll(".app-select").forEach((select) => {
    const keep = select.id === "console-app" ? '<option value="">all</option>' : "";
    const value = select.value; select.innerHTML = keep + options; select.value = value;
  });
  $("apps-table").innerHTML = "<tr><th>app</th><th>features</th><th>limits</th><th>live (since start)</th><th>usage (UTC days)</th></tr>" +
    apps.map((a) => `<tr><td><b>${esc(a.id)}</b><br>${esc(a.key)}${a.enabled ? "" : " (disabled)"}</td>
      <td>${Object.entries(a.features).map(([k, v]) => esc(k) + ": " + esc(v)).join("<br>")}</td>
      <td><code>${esc(JSON.stringify(a.limits))}</code><br>max_connections: ${esc(a.max_connections)}</td>
      <td>${Object.entries(a.live).map(([k, v]) => esc(k) + ": " + esc(v)).join("<br>")}</td>
      <td class="usage" data-app="${esc(a.id)}">${a.usage_durable ? "" : "<small>kept in memory (no data directory in use)</small>"}</td></tr>`).join("");
  apps.forEach((a) => loadUsage(a.id));
}

// An app's stored usage for the last 31 days, newest first.
async function loadUsage(app) {
  const day = (d) => new Date(Date.now() - d * 86400000).toISOString().slice(0, 10);
  const { days } = await api(`/admin/apps/${encodeURIComponent(app)}/usage?from=${day(30)}&to=${day(0)}`);
  const cell = document.querySelector(`td.usage[data-app="${CSS.escape(app)}"]`);
  if (!cell) return;
  const total = days.reduce((sum, d) => sum + d.messages, 0);
  cell.insertAdjacentHTML("afterbegin", `<table class="days"><tr><th>day</th><th>messages</th><th>peak connections</th><th>webhook calls</th></tr>` +
    days.slice().reverse().map((d) => `<tr><td>${esc(d.date)}</td><td>${d.messages}</td><td>${d.peak_connections}</td><td>${d.webhook_calls}</td></tr>`).join("") +
    `<tr><th>31 days</th><th>${total}</th><th></th><th>${days.reduce((sum, d) => sum + d.webhook_calls, 0)}</th></tr></table>`);
}

$("channels-load").onclick = async () => {
  const app = $("channels-app").value, prefix = encodeURIComponent($("channels-prefix").value);
  const { channels } = await api(`/admin/apps/${app}/channels?prefix=${prefix}`);
  $("channels-table").innerHTML = "<tr><th>channel</th><th>kind</th><th>subscribers</th><th>users</th></tr>" +
    channels.map((c) => `<tr><td><a href="#channels" data-channel="${esc(c.name)}">${esc(c.name)}</a></td><td>${esc(c.kind)}${c.cache ? " (cache)" : ""}</td><td>${c.subscription_count}</td><td>${c.user_count ?? ""}</td></tr>`).join("");
  $("channels-table").querySelectorAll("a").forEach((a) => a.onclick = () => openChannel(app, a.dataset.channel));
};

async function openChannel(app, name) {
  const c = await api(`/admin/apps/${app}/channels/${encodeURIComponent(name)}`);
  $("channel-detail").innerHTML = `<h3>${esc(c.name)}</h3><p>${c.subscription_count} subscribers</p>
    <p>Members: ${c.members.map(esc).join(", ") || "none"}</p>
    <p>Subscribers on this node: ${c.subscribers_here.map((s) => `<code>${esc(s)}</code>`).join(" ")}</p>`;
}

$("sockets-load").onclick = async () => {
  const { sockets } = await api(`/admin/apps/${$("sockets-app").value}/connections`);
  $("sockets-list").innerHTML = sockets.map((s) => `<li>${esc(s)}</li>`).join("");
  $("sockets-list").querySelectorAll("li").forEach((li) => li.onclick = () => { $("socket-id").value = li.textContent; inspect(); });
};
$("socket-load").onclick = () => inspect();

async function inspect() {
  const id = $("socket-id").value.trim();
  const s = await api(`/admin/connections/${encodeURIComponent(id)}`);
  $("socket-detail").innerHTML = `<table>${[["app", s.app_id], ["user", s.user_id ?? "not signed in"],
    ["remote address", s.remote], ["age", s.age_seconds + " s"], ["frames queued", s.frames_queued],
    ["channels", s.channels.join(", ")]].map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join("")}</table>
    <button id="kill-socket">Terminate this connection</button>
    ${s.user_id ? '<button id="kill-user">Terminate all of this user\'s connections</button>' : ""}`;
  $("kill-socket").onclick = () => post(`/admin/connections/${encodeURIComponent(id)}/terminate`).then(inspect, alert);
  if (s.user_id) $("kill-user").onclick = () => post(`/admin/apps/${s.app_id}/users/${encodeURIComponent(s.user_id)}/terminate`);
}

// The debug console.
let source = null, paused = false;
function listen() {
  if (source) source.close();
  const q = new URLSearchParams({ app: $("console-app").value, channel_prefix: $("console-prefix").value, event: $("console-event").value });
  source = new EventSource("/admin/stream?" + q);
  source.addEventListener("debug", (m) => paused || row(JSON.parse(m.data)));
  source.addEventListener("dropped", (m) => row({ dropped: JSON.parse(m.data).dropped }));
}
function row(e) {
  const body = $("console-log").tBodies[0], tr = body.insertRow(0);
  if (e.dropped) { tr.className = "dropped"; tr.innerHTML = `<td colspan="8">${e.dropped} events dropped (this viewer fell behind)</td>`; }
  else tr.innerHTML = [new Date(e.time_ms).toLocaleTimeString(), e.node, e.app_id, e.kind, e.channel, e.event, e.socket_id,
    (e.detail ?? "") + (e.data ? " " + e.data : "")].map((v) => `<td>${esc(v)}</td>`).join("");
  while (body.rows.length > 500) body.deleteRow(-1);
}
$("console-filter").onsubmit = (e) => { e.preventDefault(); listen(); };
$("console-pause").onclick = () => { paused = !paused; $("console-pause").textContent = paused ? "Resume" : "Pause"; };
$("console-clear").onclick = () => { $("console-log").tBodies[0].innerHTML = ""; };
$("creator").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await post(`/admin/apps/${$("creator-app").value}/events`, {
      channel: $("creator-channel").value, name: $("creator-event").value, data: $("creator-data").value,
    });
    $("creator-result").textContent = `sent (${r.delivered_here} here)`;
  } catch (err) { $("creator-result").textContent = err.message; }
};

show();
loadApps().then(listen);
loadOverview(); setInterval(loadOverview, 5000);
