// orc dashboard: plain JS, no dependencies. Data comes from the REST API; changes arrive over
// the WebSocket (/api/ws) and are applied in place, so the page never needs a reload.
"use strict";

const RANK = { viewer: 0, member: 1, admin: 2, owner: 3 };
const PAGE_SIZE = 20;
const MAX_BACKOFF_MS = 10000;
const PING_MS = 25000;

const state = {
  auth: "none",
  me: null,
  vocabulary: null, // task weights, statuses and actions: GET /api/vocabulary
  view: null,
  taskId: null,
  transcriptAfter: 0, // id of the last transcript entry shown on the task page
  page: 1,
  // befores[p - 1]: the `before` cursor of page p (null for page 1), from the page above it.
  befores: [null],
  nextBefore: null,
  status: "",
  items: [],
  total: 0,
  lastEventId: null,
  socket: null,
  subscribed: false,
  attempt: 0,
  retryTimer: null,
  pingTimer: null,
  lastHeard: 0,
  refreshTimer: null,
  started: false,
  buckets: null,
};

const $ = (id) => document.getElementById(id);

/** An element with attributes and children; text is always set as text, never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

const fmtTokens = (n) => Number(n || 0).toLocaleString("en-US");
const fmtCost = (n) =>
  "$" + Number(n || 0).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 });

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function fmtBytes(n) {
  if (typeof n !== "number") return String(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Call the API with the session cookie; changes carry the CSRF token of the session. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me && state.me.csrf_token) headers["X-CSRF-Token"] = state.me.csrf_token;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok && !(path === "/api/health/ready" && response.status === 503)) {
    if (response.status === 401 && state.auth !== "none" && !path.startsWith("/auth/")) signedOut();
    throw new ApiError(response.status, (data && data.message) || `${response.status} ${response.statusText}`);
  }
  return data;
}

const can = (role) => state.me !== null && RANK[state.me.role] >= RANK[role];
const mayChange = (task) => can("admin") || (can("member") && task.created_by === state.me.subject);

// ---- sign-in -------------------------------------------------------------------------------

async function boot() {
  try {
    state.auth = (await api("GET", "/auth/config")).auth;
    state.me = await api("GET", "/auth/me");
    await loadVocabulary();
  } catch (error) {
    if (error.status === 401) return showLogin();
    // The server is not answering yet: say so and try again.
    setLive("reconnecting", "Server unreachable; retrying…");
    setTimeout(boot, 2000);
    return;
  }
  startApp();
}

function showLogin() {
  stopLive();
  state.me = null;
  state.started = false;
  $("nav").hidden = true;
  $("user").hidden = true;
  $("today").hidden = true;
  $("live").hidden = true;
  showView("login");
  $("token-form").hidden = state.auth !== "token";
  $("oidc-login").hidden = state.auth !== "oidc";
  $("signed-out-note").hidden = location.hash !== "#/signed-out";
  if (state.auth === "token") $("token").focus();
  // Tier 3 goes straight to the identity provider, except right after signing out.
  if (state.auth === "oidc" && location.hash !== "#/signed-out") {
    location.assign("/auth/login?return_to=" + encodeURIComponent("/" + location.hash));
  }
}

function signedOut() {
  if (!state.started) return;
  showLogin();
}

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const input = $("token");
  try {
    state.me = await api("POST", "/auth/session", { token: input.value });
    input.value = "";
    await loadVocabulary();
    if (location.hash === "#/signed-out") location.hash = "#/tasks";
    startApp();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/auth/logout", {}); } catch { /* signed out either way */ }
  location.hash = "#/signed-out";
  showLogin();
});

// ---- layout and routing ----------------------------------------------------------------------

function startApp() {
  state.started = true;
  $("nav").hidden = false;
  $("live").hidden = false;
  if (state.auth !== "none") {
    $("user").hidden = false;
    $("user-name").textContent = state.me.subject;
    $("user-role").textContent = state.me.role;
  }
  $("new-task").hidden = !can("member");
  $("backup-now").hidden = !can("admin");
  route();
  connect();
}

function showView(name) {
  $("loading").hidden = true;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.view === name || (name === "task" && link.dataset.view === "tasks");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  state.view = name;
}

function route() {
  if (!state.started) return;
  const hash = location.hash || "#/tasks";
  const task = hash.match(/^#\/tasks\/(TASK-\d+)$/);
  if (task) {
    if (state.taskId !== task[1]) {
      state.transcriptAfter = 0;
      $("transcript").replaceChildren();
      $("transcript-empty").hidden = false;
      $("diff-box").open = false;
    }
    state.taskId = task[1];
    showView("task");
  } else if (hash === "#/cost") {
    showView("cost");
  } else if (hash === "#/system") {
    showView("system");
  } else {
    showView("tasks");
  }
  document.title = `orc · ${state.view === "task" ? state.taskId : state.view}`;
  refresh();
}

window.addEventListener("hashchange", () => {
  route();
  $("main").focus({ preventScroll: true });
});

/** Reload what the current page shows, from the REST API. */
async function refresh() {
  try {
    if (state.view === "tasks") await loadTasks();
    else if (state.view === "task") await loadTask(state.taskId);
    else if (state.view === "cost") await loadCost();
    else if (state.view === "system") await loadSystem();
  } catch (error) {
    const target = { tasks: "tasks-error", task: "task-error" }[state.view];
    if (target) $(target).textContent = error.message;
  }
}

/** Many events in a burst cause one reload, not one each (and a steady stream still reloads). */
function refreshSoon(delay = 250) {
  if (state.refreshTimer !== null && delay > 0) return;
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refresh();
  }, delay);
}

// ---- tasks -----------------------------------------------------------------------------------

/** The server's task vocabulary (once): it fills the status filter and the weight choices. */
async function loadVocabulary() {
  if (state.vocabulary) return;
  state.vocabulary = await api("GET", "/api/vocabulary");
  const { statuses, weights, default_weight: chosen } = state.vocabulary;
  for (const status of statuses) $("status-filter").append(h("option", { value: status, text: status }));
  $("new-weight").replaceChildren(...weights.map((weight) => h("option", { text: weight })));
  $("new-weight").value = chosen;
}

$("status-filter").addEventListener("change", () => {
  state.status = $("status-filter").value;
  state.page = 1;
  state.befores = [null];
  refresh();
});
$("prev-page").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); refresh(); });
$("next-page").addEventListener("click", () => { state.page += 1; refresh(); });

$("new-task").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("tasks-error").textContent = "";
  try {
    await api("POST", "/api/tasks", { title: $("new-title").value, weight: $("new-weight").value });
    $("new-title").value = "";
    refreshSoon(0);
  } catch (error) {
    $("tasks-error").textContent = error.message;
  }
});

async function loadTasks() {
  // Keyset pages (`before`): every page costs the same, however many tasks there are.
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  const before = state.befores[state.page - 1];
  if (before) query.set("before", before);
  if (state.status) query.set("status", state.status);
  const data = await api("GET", `/api/tasks?${query}`);
  state.items = data.items;
  state.total = data.total;
  state.nextBefore = data.next_before;
  state.befores[state.page] = data.next_before;
  $("tasks-error").textContent = "";
  renderTasks();
}

function renderTasks(freshId) {
  const rows = state.items.map((task) =>
    h("tr", { "data-task-id": task.id, class: task.id === freshId ? "fresh" : null },
      h("td", { class: "id" }, h("a", { href: `#/tasks/${task.id}`, text: task.id })),
      h("td", { class: "title", text: task.title }),
      h("td", { class: "opt weight", text: task.weight }),
      h("td", { class: "status-cell" }, h("span", { class: `status status-${task.status}`, text: task.status })),
      h("td", { class: "opt phase", text: task.current_phase || "–" }),
      h("td", { class: "num tokens", text: fmtTokens(task.total_tokens) }),
      h("td", { class: "num cost", text: fmtCost(task.cost_usd) }),
      h("td", { class: "opt updated", text: fmtTime(task.updated_at) })));
  $("tasks-body").replaceChildren(...rows);
  $("tasks-empty").hidden = state.total > 0 || state.status !== "";
  const first = state.total ? (state.page - 1) * PAGE_SIZE + 1 : 0;
  $("page-info").textContent = `${first}–${(state.page - 1) * PAGE_SIZE + state.items.length} of ${state.total}`;
  $("prev-page").disabled = state.page <= 1;
  $("next-page").disabled = !state.nextBefore;
}

/** Show an event at once; the reload that follows brings exact tokens and cost. */
function applyToList(event) {
  const index = state.items.findIndex((task) => task.id === event.task_id);
  const type = event.event_type;
  if (type === "task_created") {
    const task = event.data;
    const matches = !state.status || task.status === state.status;
    if (index < 0 && matches && state.page === 1) {
      state.items.unshift({ ...task, total_tokens: 0, cost_usd: 0 });
      if (state.items.length > PAGE_SIZE) state.items.pop();
      state.total += 1;
      renderTasks(task.id);
    }
  } else if (index >= 0 && type === "task_updated") {
    state.items[index] = { ...state.items[index], ...event.data };
    renderTasks();
  } else if (index >= 0 && type === "state") {
    state.items[index] = { ...state.items[index], status: event.data.to };
    renderTasks();
  } else if (index >= 0 && type === "tokens") {
    const added = Object.values(event.data.tokens || {}).reduce((a, b) => a + b, 0);
    state.items[index] = { ...state.items[index], total_tokens: state.items[index].total_tokens + added };
    renderTasks();
  } else if (index >= 0 && type === "task_deleted") {
    state.items.splice(index, 1);
    state.total -= 1;
    renderTasks();
  }
}

// ---- one task --------------------------------------------------------------------------------

async function loadTask(taskId) {
  const [task, usage] = await Promise.all([
    api("GET", `/api/tasks/${taskId}`),
    api("GET", `/api/tasks/${taskId}/usage`),
  ]);
  if (state.taskId !== taskId) return;
  $("task-error").textContent = "";
  $("task-title").textContent = `${task.id} · ${task.title}`;
  $("task-description").textContent = task.description || "";
  const facts = [
    ["Status", h("span", { class: `status status-${task.status}`, text: task.status, id: "task-status" })],
    ["Weight", task.weight],
    ["Phase", task.current_phase || "–"],
    ["Project", task.project || "–"],
    ["Branch", task.branch || "–"],
    ["Created by", task.created_by || "–"],
    ["Created", fmtTime(task.created_at)],
    ["Updated", fmtTime(task.updated_at)],
  ];
  if (task.reason) facts.splice(1, 0, ["Reason", h("span", { id: "task-reason", text: task.reason })]);
  $("task-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
  renderActions(task);
  await loadRun(taskId);
  $("phases-body").replaceChildren(...(task.phases || []).map((p) =>
    h("tr", { "data-phase": p.name },
      h("td", { text: p.name }),
      h("td", {}, h("span", { class: `status status-${p.status}`, text: p.status })),
      h("td", { class: "num iterations", text: String(p.iterations) }),
      h("td", { class: "num duration", text: fmtDuration(p.duration_seconds) }),
      h("td", { class: "num tokens", text: fmtTokens(p.total_tokens) }),
      h("td", { class: "num cost", text: fmtCost(p.cost_usd) }),
      h("td", { class: "opt", text: fmtTime(p.started_at) }))));
  if (!(task.phases || []).length) {
    $("phases-body").replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No phases yet." })));
  }
  const total = Object.values(usage.tokens).reduce((a, b) => a + b, 0);
  $("task-usage-total").textContent = `${fmtTokens(total)} tokens · ${fmtCost(usage.cost_usd)}`;
  const rows = usage.by_phase_and_model.map((row) =>
    h("tr", {},
      h("td", { text: row.phase || "–" }),
      h("td", { text: row.model }),
      h("td", { class: "num opt", text: fmtTokens(row.events) }),
      h("td", { class: "num", text: fmtTokens(row.tokens.input) }),
      h("td", { class: "num", text: fmtTokens(row.tokens.output) }),
      h("td", { class: "num opt", text: fmtTokens(row.tokens.cache_read) }),
      h("td", { class: "num opt", text: fmtTokens(row.tokens.cache_write) }),
      h("td", { class: "num", text: fmtCost(row.cost_usd) })));
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "No usage recorded." })));
  $("usage-body").replaceChildren(...rows);
}

// A run's transcript: loaded once, then appended to from `transcript` events.
async function loadRun(taskId) {
  const [status, page] = await Promise.all([
    api("GET", `/api/tasks/${taskId}/runs/latest`),
    api("GET", `/api/tasks/${taskId}/transcript?after=${state.transcriptAfter}&limit=500`),
  ]);
  if (state.taskId !== taskId) return;
  const where = status.phase ? `${status.phase} #${status.iteration}` : status.status;
  $("run-status").textContent = status.run_id
    ? `Run ${status.run_id}: ${where} · ${fmtTokens(status.total_tokens)} tokens · ${fmtCost(status.cost_usd)}`
    : "";
  // A read-only project: the branch lives in orc's clone, and this is how to get it.
  $("fetch-hint").hidden = !status.fetch_hint;
  $("fetch-hint-command").textContent = status.fetch_hint || "";
  page.items.forEach(appendEntry);
  if (taskHasBranch()) loadDiffIfOpen(taskId);
}

const taskHasBranch = () => ($("task-facts").textContent || "").includes("orc/");

function entryText(entry) {
  const c = entry.content || {};
  switch (entry.kind) {
    case "prompt": return `» ${entry.phase} #${entry.iteration}\n${c.text || ""}`;
    case "tool_use": return `⚙ ${c.name} ${JSON.stringify(c.input || {})}`;
    case "tool_result": return `${c.is_error ? "✗" : "↳"} ${c.content || ""}`;
    case "result": return `✓ turn ended${c.cost_usd != null ? ` (${fmtCost(c.cost_usd)})` : ""}`;
    default: return c.text || "";
  }
}

function appendEntry(entry) {
  if (entry.id <= state.transcriptAfter) return;
  state.transcriptAfter = entry.id;
  const list = $("transcript");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(h("li", { class: `kind-${entry.kind}`, text: entryText(entry) }));
  $("transcript-empty").hidden = true;
  if (atBottom) list.scrollTop = list.scrollHeight;
}

async function loadDiffIfOpen(taskId) {
  if (!$("diff-box").open) return;
  try {
    const diff = await api("GET", `/api/tasks/${taskId}/diff`);
    $("diff-stat").textContent = diff.stat || "No committed changes yet.";
    $("diff-patch").textContent = diff.patch + (diff.truncated ? "\n[truncated]" : "");
  } catch (error) {
    $("diff-stat").textContent = error.message;
    $("diff-patch").textContent = "";
  }
}

function renderActions(task) {
  const box = $("task-actions");
  box.hidden = !mayChange(task);
  if (box.hidden) return box.replaceChildren();
  // complete and fail overrule a run's outcome: admins only.
  const overrides = ["complete", "fail"];
  const buttons = Object.entries(state.vocabulary.actions)
    .filter(([action, allowed]) => allowed.from.includes(task.status)
      && (!overrides.includes(action) || can("admin")))
    .map(([action]) => h("button", { type: "button", text: action[0].toUpperCase() + action.slice(1),
      onclick: () => act(task.id, "POST", `/api/tasks/${task.id}/${action}`) }));
  buttons.push(h("button", { type: "button", class: "danger", text: "Delete",
    onclick: () => confirm(`Delete ${task.id}?`) && act(task.id, "DELETE", `/api/tasks/${task.id}`, true) }));
  box.replaceChildren(...buttons);
}

async function act(taskId, method, path, leave) {
  $("task-error").textContent = "";
  try {
    await api(method, path);
    if (leave) location.hash = "#/tasks";
    else refreshSoon(0);
  } catch (error) {
    $("task-error").textContent = error.message;
  }
}

// ---- cost ------------------------------------------------------------------------------------

async function loadCost() {
  const [summary, series] = await Promise.all([
    api("GET", "/api/cost/summary"),
    api("GET", "/api/cost/timeseries?days=30"),
  ]);
  for (const period of ["today", "week", "month"]) {
    const card = $(`cost-${period}`);
    card.querySelector(".cost").textContent = fmtCost(summary[period].cost_usd);
    card.querySelector(".tokens").textContent = `${fmtTokens(summary[period].total_tokens)} tokens`;
  }
  $("by-model-body").replaceChildren(...summary.by_model.map((m) =>
    h("tr", { "data-model": m.model },
      h("td", { text: m.priced ? m.model : `${m.model} (no price)` }),
      h("td", { class: "num", text: fmtTokens(m.total_tokens) }),
      h("td", { class: "num", text: fmtCost(m.cost_usd) }))));
  if (!summary.by_model.length) $("by-model-body").replaceChildren(emptyRow(3, "No usage this month."));
  $("top-tasks-body").replaceChildren(...summary.top_tasks.map((t) =>
    h("tr", { "data-task-id": t.task_id },
      h("td", {}, h("a", { href: `#/tasks/${t.task_id}`, text: t.task_id }), t.title ? ` ${t.title}` : " (deleted)"),
      h("td", { class: "num", text: fmtTokens(t.total_tokens) }),
      h("td", { class: "num", text: fmtCost(t.cost_usd) }))));
  if (!summary.top_tasks.length) $("top-tasks-body").replaceChildren(emptyRow(3, "No usage this month."));
  const unpriced = summary.unpriced_models || [];
  $("unpriced").hidden = !unpriced.length;
  $("unpriced").textContent = `No price known for ${unpriced.join(", ")}: their cost is what the agent reported for them ($0 when it reported nothing).`;
  drawChart(series.buckets);
}

const emptyRow = (span, text) => h("tr", {}, h("td", { colspan: span, class: "muted", text }));

/** Daily cost as bars in an inline SVG; each bar names its day, cost and tokens. */
function drawChart(buckets) {
  state.buckets = buckets;
  // Drawn at the box's own width, so the labels keep their size on a phone.
  const width = Math.max(300, Math.round($("cost-chart").clientWidth - 16) || 960);
  const height = 180, left = 56, bottom = 22, top = 10;
  const byCost = buckets.some((b) => b.cost_usd > 0);
  const value = (b) => (byCost ? b.cost_usd : b.total_tokens);
  const max = Math.max(...buckets.map(value), 0);
  const step = (width - left) / buckets.length;
  const total = buckets.reduce((sum, b) => sum + b.cost_usd, 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Cost per day for the last ${buckets.length} days: ${fmtCost(total)} in all`,
  });
  chart.append(svg("line", { class: "axis", x1: left, x2: width, y1: height - bottom, y2: height - bottom }));
  const label = max ? (byCost ? fmtCost(max) : `${fmtTokens(max)} tok`) : "$0";
  chart.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, label));
  chart.append(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "0"));
  buckets.forEach((b, i) => {
    const barHeight = max ? ((height - bottom - top) * value(b)) / max : 0;
    const bar = svg("rect", {
      class: "bar", x: (left + i * step + 1).toFixed(1), width: Math.max(step - 2, 1).toFixed(1),
      y: (height - bottom - barHeight).toFixed(1), height: Math.max(barHeight, 0).toFixed(1),
      "data-date": b.date,
    });
    bar.append(svg("title", {}, `${b.date}: ${fmtCost(b.cost_usd)}, ${fmtTokens(b.total_tokens)} tokens`));
    chart.append(bar);
  });
  const first = buckets[0], last = buckets[buckets.length - 1];
  if (first) chart.append(svg("text", { x: left, y: height - 6 }, first.date));
  if (last) chart.append(svg("text", { x: width, y: height - 6, "text-anchor": "end" }, last.date));
  $("cost-chart").replaceChildren(chart);
}

window.addEventListener("resize", () => {
  if (state.view === "cost" && state.buckets) drawChart(state.buckets);
});

// ---- system ----------------------------------------------------------------------------------

const INFO_LABELS = {
  backup_last_success_age_seconds: "Last backup",
  backup_last_size_bytes: "Size of the last backup",
  replication_lag_seconds: "Replication lag",
  replication_up: "Litestream running",
  disk_free_bytes: "Free disk space",
};

async function loadSystem() {
  const ready = await api("GET", "/api/health/ready");
  const info = ready.info || {};
  const worker = ready.checks.worker || "unknown";
  $("system-facts").replaceChildren(...[
    ["Version", ready.version],
    ["Status", h("span", { class: ready.status === "ok" ? "ok" : "bad", text: ready.status, id: "ready-status" })],
    ["Worker heartbeat", info.worker_heartbeat_age_seconds == null ? worker
      : `${fmtAge(info.worker_heartbeat_age_seconds)} (${worker})`],
    ["Signed in as", state.auth === "none" ? "nobody (authentication is off)" : `${state.me.subject} (${state.me.role})`],
  ].flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
  $("checks-body").replaceChildren(...Object.entries(ready.checks).map(([name, result]) =>
    h("tr", { "data-check": name },
      h("td", { text: name }),
      h("td", { class: result === "ok" ? "ok" : result.startsWith("error") ? "bad" : "", text: result }))));
  const isBackup = (key) => /^(backup|replication|litestream)/.test(key);
  const describe = (key, v) => {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number" && key.endsWith("_bytes")) return fmtBytes(v);
    if (typeof v === "number" && key.endsWith("_seconds")) return fmtAge(v);
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  };
  const label = (k) => INFO_LABELS[k] || k.replaceAll("_", " ");
  const pairs = (keep) => Object.entries(info).filter(([k]) => keep(k))
    .flatMap(([k, v]) => [h("dt", { text: label(k) }), h("dd", { text: describe(k, v) })]);
  const backup = pairs(isBackup);
  $("backup-facts").replaceChildren(...backup);
  $("backup-none").hidden = backup.length > 0;
  $("info-facts").replaceChildren(...pairs((k) => !isBackup(k) && k !== "worker_heartbeat_age_seconds"));
  if (can("admin")) await loadBackups();
}

async function loadBackups() {
  // Admins only: the list of backup files and the last failure (GET /api/backups).
  const listing = await api("GET", "/api/backups");
  const verified = (b) => (b.verified_ok === null ? "not yet" : b.verified_ok ? "ok" : "FAILED");
  $("backup-rows").replaceChildren(...listing.backups.slice(0, 10).map((b) =>
    h("tr", { "data-backup": b.name },
      h("td", { text: fmtTime(b.finished_at), title: b.name }),
      h("td", { text: b.reason }),
      h("td", { text: b.kind }),
      h("td", { class: "num", text: fmtBytes(b.size) }),
      h("td", { text: verified(b) }))));
  $("backup-list").hidden = listing.backups.length === 0;
  const failure = listing.last_failure;
  if (failure && (!listing.last_success || failure.at > listing.last_success.finished_at)) {
    $("backup-facts").append(h("dt", { text: "last failure" }),
      h("dd", { class: "bad", text: `${fmtTime(failure.at)}: ${failure.error}` }));
  }
}

$("backup-now").addEventListener("click", async () => {
  const out = $("backup-result");
  out.hidden = false;
  out.textContent = "Backing up…";
  $("backup-now").disabled = true;
  try {
    await api("POST", "/api/backups");
    // The job worker takes it; its "backup" event refreshes this page when it is done.
    out.textContent = "Queued: the job worker is taking a backup; it appears below when done.";
  } catch (error) {
    out.textContent = `Failed: ${error.message}`;
  } finally {
    $("backup-now").disabled = false;
  }
});

// ---- live updates ----------------------------------------------------------------------------

function setLive(mode, text) {
  const el = $("live");
  el.dataset.state = mode;
  el.textContent = text || { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" }[mode];
}

/** Open the WebSocket and subscribe to everything after the last event seen. */
async function connect() {
  clearTimeout(state.retryTimer);
  if (!state.started || state.socket) return;
  setLive(state.lastEventId === null ? "connecting" : "reconnecting");
  let url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`;
  if (state.auth !== "none") {
    // A ticket rather than the cookie: it works even when the Origin the server expects differs.
    try {
      const ticket = await api("POST", "/api/ws/ticket");
      url += `?ticket=${encodeURIComponent(ticket.ticket)}`;
    } catch (error) {
      if (error.status === 401) return signedOut();
      return reconnectLater();
    }
  }
  if (!state.started) return;
  const socket = new WebSocket(url);
  state.socket = socket;
  state.subscribed = false;
  socket.onopen = () => {
    state.lastHeard = Date.now();
    socket.send(JSON.stringify({ type: "subscribe", task_id: "*", since: state.lastEventId }));
  };
  socket.onmessage = (message) => {
    state.lastHeard = Date.now();
    onMessage(JSON.parse(message.data));
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    clearInterval(state.pingTimer);
    // 4401: the session was revoked (signed out elsewhere): check who we are before retrying.
    if (event.code === 4401) return boot();
    reconnectLater();
  };
}

function reconnectLater() {
  if (!state.started) return;
  const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** state.attempt) * (0.8 + Math.random() * 0.4);
  state.attempt += 1;
  setLive("reconnecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
  state.retryTimer = setTimeout(connect, delay);
}

function stopLive() {
  clearTimeout(state.retryTimer);
  clearInterval(state.pingTimer);
  if (state.socket) {
    const socket = state.socket;
    state.socket = null;
    socket.close();
  }
}

function onMessage(message) {
  if (message.type === "subscribed") {
    const first = state.lastEventId === null;
    // Events before oldest_id were pruned while we were away (or this is another database,
    // with fewer events than we saw): catching up is impossible, so reload through REST.
    const truncated = !first && ((message.oldest_id !== null && state.lastEventId + 1 < message.oldest_id)
      || message.last_id < state.lastEventId);
    if (first || truncated) state.lastEventId = message.last_id;
    state.subscribed = true;
    state.attempt = 0;
    setLive("live");
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(keepAlive, PING_MS);
    // The first load raced the subscription; reload once so nothing between them is missed.
    if (first || truncated) refreshSoon(0);
  } else if (message.type === "event") {
    if (state.lastEventId !== null && message.id <= state.lastEventId) return;
    state.lastEventId = message.id;
    onEvent(message);
  } else if (message.type === "session_update") {
    const today = $("today");
    today.hidden = false;
    today.textContent = `${message.running_tasks} running${message.queued_tasks ? ` · ${message.queued_tasks} queued` : ""} · ${fmtTokens(message.tokens_today)} tokens today · ${fmtCost(message.cost_today_usd)} today`;
  }
}

function keepAlive() {
  const socket = state.socket;
  if (!socket) return;
  // Nothing heard for two intervals: the connection is dead even if the OS has not noticed.
  if (Date.now() - state.lastHeard > 2 * PING_MS) return socket.close();
  socket.send(JSON.stringify({ type: "ping" }));
}

function onEvent(event) {
  if (state.view === "system" && ["backup", "replication"].includes(event.event_type)) {
    if (event.event_type === "backup") {
      $("backup-result").textContent = event.data.status === "ok"
        ? `Backup ${event.data.name} done (${fmtBytes(event.data.size)}).`
        : `Backup failed: ${event.data.error}`;
    }
    refreshSoon();
    return;
  }
  if (!event.task_id) return;
  if (state.view === "tasks") {
    applyToList(event);
    refreshSoon();
  } else if (state.view === "task" && event.task_id === state.taskId) {
    if (event.event_type === "task_deleted") $("task-error").textContent = `${state.taskId} was deleted.`;
    else if (event.event_type === "transcript") {
      appendEntry(event.data);
      // A new iteration or a turn's end changes the phases' iterations, tokens and cost.
      if (["prompt", "result"].includes(event.data.kind)) refreshSoon();
    } else refreshSoon();
  } else if (state.view === "cost" && event.event_type === "tokens") {
    refreshSoon(1000);
  }
}

$("diff-box").addEventListener("toggle", () => state.taskId && loadDiffIfOpen(state.taskId));

boot();
