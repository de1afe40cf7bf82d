// The report's selectable front: a scatter of two objectives, the table of policies, and the selected
// policy's values, layers and export commands. Everything it reads is in the page (#run-data).
"use strict";
const data = JSON.parse(document.getElementById("run-data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const W = 720, H = 420, LEFT = 72, RIGHT = 24, TOP = 18, BOTTOM = 52;
const LOG_SPAN = 10, PAD = 0.08;

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
}

// an axis: an objective in its display unit, or (when only one objective separates the policies) their order
function objectiveAxis(name) {
  const [factor, label] = data.axes[name];
  return {label, value: p => p.objectives[name] / factor, shown: p => p.shown[name], metric: name === "metric"};
}

function orderAxis(by) {
  const order = [...data.solutions].sort((a, b) => by.value(a) - by.value(b) || a.id - b.id).map(s => s.id);
  return {label: "policies, in that order", value: p => order.indexOf(p.id), shown: p => `#${p.id}`, order};
}

function pairs() {
  const drawn = data.objectives.filter(name => !(name in data.flat));
  const result = [];
  for (let i = 0; i < drawn.length; i++)
    for (let j = i + 1; j < drawn.length; j++)
      result.push({title: `${data.axes[drawn[i]][2]} / ${data.axes[drawn[j]][2]}`,
                   axes: () => [objectiveAxis(drawn[i]), objectiveAxis(drawn[j])]});
  if (!result.length) {   // one objective separates them (the others are flat): its values, policy by policy
    const name = drawn[0] || data.objectives[0];
    result.push({title: data.axes[name][2], axes: () => { const x = objectiveAxis(name); return [x, orderAxis(x)]; }});
  }
  return result;
}

// the axis framed on the policies' values (not the references'): a log scale when a cost spans decades; for a
// metric drop reaching ten times 1% of the fp32 metric, linear near zero and logarithmic beyond (as the PNGs)
function frame(axis) {
  const values = data.solutions.map(axis.value);
  let low = Math.min(...values), high = Math.max(...values);
  const width = data.metric_width;
  let kind = "linear";
  if (axis.order) {
    low -= 0.5; high += 0.5;
  } else if (!axis.metric && low > 0 && high / low >= LOG_SPAN) {
    kind = "log";
    const pad = Math.pow(high / low, PAD);
    low /= pad; high *= pad;
  } else if (axis.metric && Math.max(Math.abs(low), Math.abs(high)) >= LOG_SPAN * width) {
    kind = "symlog";
    low = low < -width ? low - 2 * PAD * Math.abs(low) : Math.min(low, 0) - 0.2 * width;
    high = high > width ? high + 2 * PAD * Math.abs(high) : Math.max(high, 0) + 0.2 * width;
  } else {
    const span = (high - low) || (axis.metric ? 10 * width : Math.abs(high) * 0.2 || 1);
    if (high > low) { low -= PAD * span; high += PAD * span; } else { low -= span / 2; high += span / 2; }
  }
  const t = kind === "log" ? Math.log10 :
    kind === "symlog" ? (v => Math.sign(v) * Math.log10(1 + Math.abs(v) / width)) : (v => v);
  return {...axis, low, high, kind, at: (v, size) => (t(v) - t(low)) / (t(high) - t(low)) * size};
}

// 1-2-5 steps (powers of ten alone when they span more than three decades)
function logSteps(from, to) {
  const out = [], subs = Math.log10(to / from) > 3 ? [1] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(from)); e <= Math.ceil(Math.log10(to)); e++)
    for (const c of subs) { const v = c * Math.pow(10, e); if (v >= from && v <= to) out.push(v); }
  return out;
}

// [value, label] pairs, labelled with as many decimals as the step needs
function ticks(axis) {
  const plain = v => String(+v.toPrecision(3));
  if (axis.order)
    return axis.order.length <= 24 ? axis.order.map((id, i) => [i, `#${id}`]) : [];
  if (axis.kind === "log") return logSteps(axis.low, axis.high).map(v => [v, plain(v)]);
  if (axis.kind === "symlog") {
    const width = data.metric_width, up = axis.high > width ? logSteps(width, axis.high) : [];
    const down = axis.low < -width ? logSteps(width, -axis.low).map(v => -v) : [];
    return [...down.reverse(), 0, ...up].map(v => [v, plain(v)]);
  }
  const raw = (axis.high - axis.low) / 5, step0 = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(c => c * step0).find(s => s >= raw);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  const out = [];
  for (let v = Math.ceil(axis.low / step) * step; v <= axis.high; v += step) out.push([v, v.toFixed(decimals)]);
  return out;
}

function star(x, y, r) {
  const points = [];
  for (let i = 0; i < 10; i++) {
    const a = Math.PI / 2 + i * Math.PI / 5, rr = i % 2 ? r * 0.45 : r;
    points.push(`${(x + rr * Math.cos(a)).toFixed(1)},${(y - rr * Math.sin(a)).toFixed(1)}`);
  }
  // drawn over the picked point, it lets clicks through to it
  return el("polygon", {points: points.join(" "), class: "chosen-star", fill: "#d62728", stroke: "#000",
                        "pointer-events": "none"});
}

function draw(choice) {
  const svg = document.getElementById("scatter");
  svg.replaceChildren();
  const [x, y] = choice.axes().map(frame);
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  const px = v => LEFT + x.at(v, plotW), py = v => TOP + plotH - y.at(v, plotH);
  for (const [v, label] of ticks(x)) {
    svg.append(el("line", {x1: px(v), x2: px(v), y1: TOP, y2: TOP + plotH, class: "gridline"}));
    svg.append(el("text", {x: px(v), y: TOP + plotH + 16, "text-anchor": "middle"}, label));
  }
  for (const [v, label] of ticks(y)) {
    svg.append(el("line", {x1: LEFT, x2: LEFT + plotW, y1: py(v), y2: py(v), class: "gridline"}));
    svg.append(el("text", {x: LEFT - 6, y: py(v) + 4, "text-anchor": "end"}, label));
  }
  svg.append(el("rect", {x: LEFT, y: TOP, width: plotW, height: plotH, fill: "none", class: "axis"}));
  const scale = {log: " (log)", symlog: " (log beyond 1% of fp32)"};
  svg.append(el("text", {x: LEFT + plotW / 2, y: H - 10, "text-anchor": "middle", id: "x-label"},
                x.label + (scale[x.kind] || "")));
  svg.append(el("text", {x: 14, y: TOP + plotH / 2, "text-anchor": "middle", id: "y-label",
                         transform: `rotate(-90 14 ${TOP + plotH / 2})`}, y.label + (scale[y.kind] || "")));
  const beyond = [];   // references beyond the zoomed axes: a marker at the edge, named under the figure
  for (const ref of y.order ? [] : data.references) {
    const vx = x.value(ref), vy = y.value(ref);
    const cx = Math.min(Math.max(vx, x.low), x.high), cy = Math.min(Math.max(vy, y.low), y.high);
    const mark = el("rect", {x: px(cx) - 5, y: py(cy) - 5, width: 10, height: 10, class: "reference"});
    mark.append(el("title", {}, `${ref.name}: ${x.shown(ref)}, ${y.shown(ref)}`));
    svg.append(mark);
    if (cx !== vx || cy !== vy) beyond.push(`${ref.name} (${x.shown(ref)}, ${y.shown(ref)})`);
  }
  document.getElementById("beyond").textContent = y.order ?
    "References, not drawn against the policies' order: " +
      data.references.map(ref => `${ref.name} (${x.shown(ref)})`).join("; ") :
    beyond.length ? "At the edge, beyond the axes: " + beyond.join("; ") : "";
  for (const s of data.solutions) {
    const dot = el("circle", {cx: px(x.value(s)), cy: py(y.value(s)), r: 5, class: "point", "data-id": s.id});
    dot.append(el("title", {}, `#${s.id}: ${x.shown(s)}, ${y.shown(s)}, ${s.bits}`));
    dot.addEventListener("click", () => select(s.id));
    svg.append(dot);
  }
  const chosen = data.solutions.find(s => s.id === data.chosen);
  if (chosen) svg.append(star(px(x.value(chosen)), py(y.value(chosen)), 11));
  highlight();
}

function frontTable() {
  const body = document.querySelector("#front-table tbody");
  const first = data.objectives[0];
  const rows = data.references.map(r => [r, true])
    .concat([...data.solutions].sort((a, b) => a.objectives[first] - b.objectives[first] || a.id - b.id)
      .map(s => [s, false]));
  for (const [s, reference] of rows) {
    const tr = document.createElement("tr");
    const marks = reference ? "reference" :
      [s.id === data.knee ? "knee" : "", s.id === data.chosen ? `picked (${data.pick})` : ""].filter(Boolean).join(", ");
    const cells = [reference ? s.name : String(s.id), ...data.objectives.map(n => s.shown[n]), s.metric, s.bits, marks];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    if (reference) tr.className = "reference";
    else {
      tr.dataset.id = s.id;
      tr.tabIndex = 0;
      tr.addEventListener("click", () => select(s.id));
      tr.addEventListener("keydown", event => keyOnRow(event, tr));
    }
    body.append(tr);
  }
}

let selected = null;

// Enter or Space selects the focused row; the arrow keys move to the next or previous policy and select it
function keyOnRow(event, row) {
  if (event.key === "Enter" || event.key === " ") {
    select(Number(row.dataset.id));
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const next = event.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
    if (next && next.dataset.id !== undefined) { next.focus(); select(Number(next.dataset.id)); }
  } else {
    return;
  }
  event.preventDefault();
}

function highlight() {
  document.querySelectorAll("#scatter .point").forEach(p =>
    p.classList.toggle("selected", Number(p.dataset.id) === selected));
  document.querySelectorAll("#front-table tbody tr[data-id]").forEach(r =>
    r.classList.toggle("selected", Number(r.dataset.id) === selected));
}

function bitsClass(cell) {
  const bits = parseInt(cell.slice(1), 10);
  return bits <= 2 ? "w2" : bits === 3 ? "w3" : bits < 8 ? "w4" : bits === 8 ? "w8" : bits === 16 ? "w16" : "w32";
}

function select(id) {
  const s = data.solutions.find(p => p.id === id);
  if (!s) return;
  selected = id;
  document.getElementById("chosen-title").textContent =
    `#${id}` + (id === data.chosen ? ` (picked by ${data.pick})` : id === data.knee ? " (the knee)" : "");
  const values = document.getElementById("chosen-values");
  values.replaceChildren();
  for (const name of data.objectives) {
    const span = document.createElement("span");
    span.dataset.objective = name;
    span.textContent = `${data.axes[name][2]}: ${s.shown[name]}`;
    values.append(span);
  }
  const bits = document.createElement("span");
  bits.textContent = `bits: ${s.bits}`;
  values.append(bits);
  const run = shellQuote(data.run_dir);
  document.getElementById("export-commands").textContent =
    `qevo export ${run} policy-${id}.onnx --pick ${id}    # the quantized model, loaded and measured again\n` +
    `qevo export ${run} policy-${id}.yaml --pick ${id}    # the policy as a file`;
  const table = document.getElementById("chosen-layers");
  const head = ["layer"].concat(data.sensitivity ? [data.sensitivity.label] : [], [`#${id}`]);
  table.tHead.replaceChildren(rowOf(head, "th"));
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const layer of data.layers) {
    const sens = data.sensitivity ? [layer in data.sensitivity.values ? data.sensitivity.values[layer].toFixed(1) : "-"] : [];
    const tr = rowOf([layer, ...sens, s.layers[layer]], "td");
    tr.lastChild.className = bitsClass(s.layers[layer]);
    if (data.sensitivity && layer in data.sensitivity.values) {
      const v = data.sensitivity.values[layer];
      const [sensitive, doubtful] = data.sensitivity.levels;
      tr.children[1].className = v < sensitive ? "bad" : v < doubtful ? "warn" : "";
    }
    body.append(tr);
  }
  highlight();
}

function rowOf(cells, tag) {
  const tr = document.createElement("tr");
  for (const text of cells) { const c = document.createElement(tag); c.textContent = text; tr.append(c); }
  return tr;
}

const choices = pairs();
const selector = document.getElementById("pair");
choices.forEach((choice, i) => {
  const option = document.createElement("option");
  option.value = i;
  option.textContent = choice.title;
  selector.append(option);
});
selector.addEventListener("change", () => draw(choices[Number(selector.value)]));
frontTable();
if (data.solutions.length && choices.length) draw(choices[0]);
if (data.chosen !== null) select(data.chosen);
document.body.dataset.ready = "true";
