// The observatory page: draws every panel from the JSON payload written by aegir/dashboard/render.py.
// Figures are drawn when they scroll into view (all at once with #eager in the URL), so large pages open fast.
(function () {
  "use strict";
  const P = JSON.parse(document.getElementById("payload").textContent);
  const app = document.getElementById("app");
  const EAGER = location.hash.indexOf("eager") >= 0;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"];
  const STATUS_CODE = {finished: 0, pruned: 1, failed: 2, running: 3};
  let uid = 0;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else if (k === "html") node.innerHTML = v; else node.setAttribute(k, v);
    }
    for (const c of children || []) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return node;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "—";
    if (typeof v === "number") return Number.isInteger(v) && Math.abs(v) < 1e9 ? String(v) : v.toPrecision(digits || 4);
    return String(v);
  }
  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
  }
  function panel(id, title, why) {
    const s = el("section", {class: "panel", id: id}, [el("h2", {text: title})]);
    if (why) s.appendChild(el("p", {class: "why", text: why}));
    app.appendChild(s);
    nav.appendChild(el("a", {href: "#" + id, text: title}));
    return s;
  }
  function select(options, onChange, label) {
    const s = el("select", {});
    options.forEach((o) => s.appendChild(el("option", {value: o, text: o})));
    s.addEventListener("change", () => onChange(s.value));
    return label ? el("label", {}, [label + " ", s]) : s;
  }
  const pending = new Map();
  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    entries.forEach((e) => { if (e.isIntersecting) draw(e.target); });
  }, {rootMargin: "400px"}) : null;
  function draw(div) {
    const make = pending.get(div);
    if (!make) return;
    pending.delete(div);
    if (observer) observer.unobserve(div);
    const spec = make();
    const layout = Object.assign({margin: {l: 55, r: 15, t: 40, b: 40}, font: {size: 11},
                                  legend: {font: {size: 10}}, hovermode: "closest"}, spec.layout || {});
    // titles on the left: the tool bar sits on the right
    if (layout.title) layout.title = Object.assign({x: 0.01, xanchor: "left", font: {size: 13}}, layout.title);
    Plotly.newPlot(div, spec.data, layout, {responsive: true, displaylogo: false});
    div.dataset.drawn = "1";
  }
  function figure(parent, make, cls) {
    const div = el("div", {class: "fig " + (cls || ""), id: "fig" + (uid++), "data-fig": "1"});
    parent.appendChild(div);
    pending.set(div, make);
    if (EAGER || !observer) setTimeout(() => draw(div), 0); else observer.observe(div);
    return div;
  }
  function redraw(div, make) { pending.set(div, make); draw(div); }
  function table(header, rows, sortable) {
    const t = el("table", {class: "t"});
    const thead = el("tr", {}, header.map((h) => el("th", {text: h})));
    t.appendChild(el("thead", {}, [thead]));
    const tbody = el("tbody");
    rows.forEach((r) => tbody.appendChild(r));
    t.appendChild(tbody);
    if (sortable) {
      Array.from(thead.children).forEach((th, i) => th.addEventListener("click", () => {
        const dir = th.dataset.dir === "asc" ? -1 : 1;
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        const key = (tr) => tr.children[i].dataset.v !== undefined ? tr.children[i].dataset.v : tr.children[i].textContent;
        const list = Array.from(tbody.children);
        list.sort((a, b) => {
          const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
          const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
          return c * dir;
        });
        list.forEach((tr) => tbody.appendChild(tr));
      }));
    }
    return t;
  }
  function td(text, cls, sortValue) {
    const c = el("td", {text: text});
    if (cls) c.className = cls;
    if (sortValue !== undefined && sortValue !== null) c.dataset.v = sortValue;
    return c;
  }
  function line(xy, name, color, extra) {
    return Object.assign({x: xy[0], y: xy[1], name: name, type: "scatter", mode: "lines",
                          line: {color: color, width: 1.6}}, extra || {});
  }
  function band(b, name, color) {  // mean line plus a filled lower..upper area
    return [
      {x: b.steps, y: b.upper, type: "scatter", mode: "lines", line: {width: 0}, showlegend: false,
       hoverinfo: "skip", legendgroup: name},
      {x: b.steps, y: b.lower, type: "scatter", mode: "lines", line: {width: 0}, fill: "tonexty",
       fillcolor: rgba(color, 0.18), showlegend: false, hoverinfo: "skip", legendgroup: name},
      {x: b.steps, y: b.mean, type: "scatter", mode: "lines", name: name + ` (mean ± 95% CI, n=${b.n})`,
       line: {color: color, width: 2.2}, legendgroup: name},
    ];
  }
  const runById = Object.fromEntries(P.runs.map((r) => [r.id, r]));

  // ------------------------------------------------------------------ header
  const header = el("header", {}, [el("h1", {text: P.title}),
    el("div", {class: "sub", text: `${P.runs.length} runs from ${P.roots.join(", ")} · built ${P.generated}` +
      (P.downsample ? ` · curves thinned to ≤ ${P.downsample.points_per_series} points (min/max kept)` : "")})]);
  document.body.insertBefore(header, app);
  const nav = el("nav");
  document.body.insertBefore(nav, app);
  if (P.notices.length) {
    const box = el("section", {class: "panel", id: "notices"}, [el("h2", {text: "Notices"})]);
    P.notices.forEach((n) => box.appendChild(el("div", {class: "notice", text: n})));
    app.appendChild(box);
  }

  // ------------------------------------------------------------------ runs table
  if (P.runs.length) {
    const s = panel("runs", "Runs", "One row per run; click a heading to sort. Objective ± 95% CI (within-run, " +
      "over eval items); configurations pool their seeds below.");
    const rows = P.runs.map((r) => {
      const o = r.objective;
      const gates = Object.values(r.gates);
      const passed = gates.filter((g) => g.verdict === "pass").length;
      const tr = el("tr", {}, [
        td(r.id), td(r.arm), td(fmt(r.seed), "num", r.seed), td(r.model),
        td(r.status + (r.reason ? ": " + r.reason.slice(0, 80) : ""), "st-" + r.status),
        td(`${o.metric} = ${fmt(o.value)}${o.ci !== null ? " ± " + fmt(o.ci, 3) : ""}` +
           (o.final ? "" : (o.value !== null ? " (last reported)" : "")), "num", o.value),
        td(gates.length ? `${passed}/${gates.length} pass` : "—", "", gates.length ? passed / gates.length : -1),
        td(r.wall !== null && r.wall !== undefined ? fmt(r.wall, 3) + " s" : "—", "num", r.wall),
        td(fmt(r.steps), "num", r.steps), td(r.config)]);
      return tr;
    });
    s.appendChild(table(["run", "arm", "seed", "model", "status", "objective", "gates", "wall time", "steps",
                         "configuration"], rows, true));
    s.appendChild(el("h3", {text: "Configurations (seeds pooled: mean ± 95% CI, Student t over finished seeds)"}));
    s.appendChild(table(["configuration", "arm", "runs", "finished", "objective", "mean ± 95% CI"], P.configs.map((c) =>
      el("tr", {}, [td(c.label), td(c.arm.join(", ")), td(String(c.runs.length), "num"), td(String(c.finished), "num"),
                    td(c.metric), td(`${fmt(c.mean)} ± ${fmt(c.ci95, 3)}`, "num", c.mean)])), true));
  }

  // ------------------------------------------------------------------ gate strip
  if (P.gate_names.length) {
    const s = panel("gates", "Gate strip", "Per run and gate: pass (green) / fail (red) with the observed value " +
      "and the threshold; pending = the run is still running, no verdict = it ended without one.");
    const rows = P.runs.map((r) => el("tr", {}, [td(r.id, "st-" + r.status)].concat(P.gate_names.map((g) => {
      const c = r.gates[g];
      if (!c) return td("", "g-no");
      const text = `${c.verdict}: ${c.metric} = ${fmt(c.observed)} (${c.op} ${fmt(c.threshold)})`;
      return td(text, "g-" + c.verdict.split(" ")[0]);
    }))));
    P.aggregate_gates.forEach((a) => rows.push(el("tr", {}, [td(`aggregate: ${a.label} (${a.source})`)].concat(
      P.gate_names.map((g) => {
        const c = a.gates[g];
        return c ? td(`${c.verdict}: ${c.metric} = ${fmt(c.observed)} (${c.op} ${fmt(c.threshold)})`, "g-" + c.verdict) : td("", "g-no");
      })))));
    s.appendChild(table(["run"].concat(P.gate_names), rows, true));
  }

  // ------------------------------------------------------------------ curves
  if (P.metrics.length) {
    const s = panel("curves", "Curves", "Any metric over steps, runs overlaid; seed bands = mean ± 95% CI " +
      "(Student t) across the seeds of one configuration, at the steps every seed logged.");
    let metric = P.metrics.indexOf("eval/reward") >= 0 ? "eval/reward" :
      (P.metrics.indexOf(P.runs[0].objective.metric) >= 0 ? P.runs[0].objective.metric : P.metrics[0]);
    let showRuns = true, showBands = true;
    const controls = el("div", {class: "controls"});
    const sel = select(P.metrics, (v) => { metric = v; redraw(div, make); }, "metric");
    sel.querySelector("select").value = metric;
    const cbRuns = el("input", {type: "checkbox"}); cbRuns.checked = true;
    const cbBands = el("input", {type: "checkbox"}); cbBands.checked = true;
    cbRuns.addEventListener("change", () => { showRuns = cbRuns.checked; redraw(div, make); });
    cbBands.addEventListener("change", () => { showBands = cbBands.checked; redraw(div, make); });
    controls.append(sel, el("label", {}, [cbRuns, " runs"]), el("label", {}, [cbBands, " seed bands"]));
    s.appendChild(controls);
    const make = () => {
      const data = [];
      const labels = Object.keys(P.bands);
      if (showBands) labels.forEach((label, i) => {
        if (P.bands[label][metric]) data.push(...band(P.bands[label][metric], label, COLORS[i % COLORS.length]));
      });
      if (showRuns) P.runs.forEach((r, i) => {
        const xy = (P.series[r.id] || {})[metric];
        if (!xy) return;
        const gi = labels.indexOf(r.config);
        const color = gi >= 0 ? COLORS[gi % COLORS.length] : COLORS[i % COLORS.length];
        data.push(line(xy, r.id, color, {opacity: gi >= 0 && showBands ? 0.45 : 1,
                                         line: {color: color, width: gi >= 0 && showBands ? 1 : 1.6}}));
      });
      return {data: data, layout: {title: {text: metric}, xaxis: {title: {text: "step"}}, height: 460}};
    };
    const div = figure(s, make);
  }

  // ------------------------------------------------------------------ arm overlay
  if (P.arms.length) {
    const s = panel("arms", "Arm overlay", "Same model and budget on each corpus arm, seeds pooled: one band per arm " +
      "(mean ± 95% CI across seeds), and at the end the paired difference by seed (reference − arm) with its " +
      "paired-t 95% CI and p.");
    P.arms.forEach((cmp) => {
      s.appendChild(el("h3", {text: `${cmp.name}: arms ${cmp.arms.join(", ")} (reference ${cmp.reference})`}));
      const same = Object.entries(cmp.data).filter(([, h]) => h.length === 1).map(([k, h]) => `${k} (${h[0].slice(0, 12)})`);
      const differ = Object.entries(cmp.data).filter(([, h]) => h.length > 1).map(([k, h]) => `${k} (${h.length} hashes)`);
      s.appendChild(el("p", {class: "why", text: `Same bytes in every run: ${same.join(", ") || "—"}. ` +
        `Differ between runs: ${differ.join(", ") || "—"}.`}));
      const names = cmp.metrics.map((m) => m.metric);
      const pick = names.find((n) => n.startsWith("eval/")) || names[0];
      let current = cmp.metrics[names.indexOf(pick)];
      const make = () => {
        const data = [];
        cmp.arms.forEach((arm, i) => {
          const color = COLORS[i % COLORS.length];
          if (current.bands[arm]) data.push(...band(current.bands[arm], arm, color));
          else if (current.single[arm]) data.push(line(current.single[arm], arm + " (one seed)", color));
        });
        if (data.length) return {data: data, layout: {title: {text: current.metric + " by arm"},
                                                      xaxis: {title: {text: "step"}}, height: 400}};
        // a metric measured only at the end (no curve): each seed's final value per arm, and the mean ± 95% CI
        cmp.arms.forEach((arm, i) => {
          const f = current.finals[arm], seeds = Object.keys(f.values);
          data.push({type: "scatter", mode: "markers", x: seeds.map(() => arm), y: seeds.map((k) => f.values[k]),
                     text: seeds.map((k) => "seed " + k), name: arm + " seeds", marker: {size: 8, color: rgba(COLORS[i % COLORS.length], 0.5)}});
          data.push({type: "scatter", mode: "markers", x: [arm], y: [f.mean], name: `${arm} mean ± 95% CI (n=${f.n})`,
                     error_y: {type: "data", array: [f.ci95 === null ? 0 : f.ci95]}, marker: {size: 14, symbol: "line-ew-open",
                     color: COLORS[i % COLORS.length], line: {width: 3}}});
        });
        return {data: data, layout: {title: {text: current.metric + " at the end, by arm (measured once per run)"}, height: 400,
                                     xaxis: {type: "category"}}};
      };
      const controls = el("div", {class: "controls"});
      const sel = select(names, (v) => { current = cmp.metrics[names.indexOf(v)]; redraw(div, make); }, "metric");
      sel.querySelector("select").value = pick;
      controls.appendChild(sel);
      s.appendChild(controls);
      const div = figure(s, make);
      figure(s, () => {  // forest plot of every metric's paired differences
        const ys = [], xs = [], lo = [], hi = [], text = [];
        cmp.metrics.forEach((m) => m.diffs.forEach((dd) => {
          ys.push(`${m.metric}: ${dd.reference} − ${dd.other}`); xs.push(dd.mean);
          lo.push(dd.lower === null ? 0 : dd.mean - dd.lower); hi.push(dd.upper === null ? 0 : dd.upper - dd.mean);
          text.push(`n=${dd.n}, p=${fmt(dd.p, 3)}`);
        }));
        return {data: [{x: xs, y: ys, type: "scatter", mode: "markers", text: text, marker: {size: 8, color: "#1d2330"},
                        error_x: {type: "data", symmetric: false, array: hi, arrayminus: lo}, name: "paired difference"}],
                layout: {title: {text: "Paired differences at the end (95% CI)"}, height: Math.max(300, 40 + 26 * ys.length),
                         margin: {l: 260, r: 15, t: 36, b: 40}, showlegend: false,
                         shapes: [{type: "line", x0: 0, x1: 0, yref: "paper", y0: 0, y1: 1,
                                   line: {color: "#888", dash: "dot"}}]}};
      });
      const rows = [];
      cmp.metrics.forEach((m) => {
        const finals = cmp.arms.map((a) => `${a}: ${fmt(m.finals[a].mean)} ± ${fmt(m.finals[a].ci95, 3)} (n=${m.finals[a].n})`);
        m.diffs.forEach((dd) => rows.push(el("tr", {}, [td(m.metric), td(`${dd.reference} − ${dd.other}`),
          td(fmt(dd.mean), "num", dd.mean), td(`[${fmt(dd.lower)}, ${fmt(dd.upper)}]`, "num"), td(fmt(dd.p, 3), "num", dd.p),
          td(String(dd.n), "num"), td(finals.join("; "))])));
      });
      s.appendChild(table(["metric", "difference", "mean", "95% CI (paired t)", "p", "pairs", "final per arm (mean ± 95% CI)"],
                          rows, true));
      const gateRows = [];
      cmp.arms.forEach((arm) => cmp.gates[arm].forEach(([run, gates]) => {
        const parts = Object.entries(gates).map(([g, v]) => `${g}: ${v.passed ? "pass" : "fail"} (${fmt(v.observed)})`);
        gateRows.push(el("tr", {}, [td(arm), td(run), td(parts.join("; ") || "—")]));
      }));
      P.aggregate_gates.filter((a) => a.label === cmp.name).forEach((a) => {
        s.appendChild(el("h3", {text: "Aggregate gates (over the arms, from " + a.source + ")"}));
        s.appendChild(table(["gate", "verdict", "metric", "observed", "threshold"], Object.entries(a.gates).map(([g, c]) =>
          el("tr", {}, [td(g), td(c.verdict, "g-" + c.verdict), td(c.metric), td(fmt(c.observed), "num"),
                        td(`${c.op} ${fmt(c.threshold)}`)])), true));
      });
      if (cmp.arms.some((arm) => cmp.gates[arm].some(([, gates]) => Object.keys(gates).length))) {
        s.appendChild(el("h3", {text: "Gate verdicts by arm"}));
        s.appendChild(table(["arm", "run", "gates"], gateRows, true));
      }
    });
  }

  // ------------------------------------------------------------------ GRPO health
  const grpoRuns = Object.keys(P.grpo);
  if (grpoRuns.length) {
    const s = panel("grpo", "GRPO health", "Reward mean ± std band with min/max (collapse-canary periods shaded), " +
      "components, the weighted decomposition of R, advantages, zero-variance groups, KL, clipping, lengths.");
    let run = grpoRuns[0];
    const controls = el("div", {class: "controls"});
    controls.appendChild(select(grpoRuns, (v) => { run = v; grid.innerHTML = ""; build(); }, "run"));
    s.appendChild(controls);
    const grid = el("div", {class: "grid"});
    s.appendChild(grid);
    const get = (m) => (P.series[run] || {})[m];
    const shade = () => P.grpo[run].collapse.map(([a, b]) => ({type: "rect", xref: "x", yref: "paper", x0: a, x1: b,
      y0: 0, y1: 1, fillcolor: "rgba(214,39,40,0.15)", line: {width: 0}}));
    const simple = (title, metrics) => () => ({data: metrics.filter(get).map((m, i) => line(get(m), m.replace(/^grpo\//, ""),
      COLORS[i % COLORS.length])), layout: {title: {text: title}, height: 300, shapes: shade(), xaxis: {title: {text: "step"}},
      legend: {orientation: "h", x: 0, y: -0.3, font: {size: 10}}, margin: {l: 55, r: 15, t: 40, b: 70}}});
    function build() {
      const g = P.grpo[run];
      figure(grid, () => {
        const m = get("grpo/reward/mean"), sd = get("grpo/reward/std");
        const data = [];
        if (m && sd && m[0].length === sd[0].length) {
          const up = m[1].map((v, i) => v + sd[1][i]), lo = m[1].map((v, i) => v - sd[1][i]);
          data.push(...band({steps: m[0], mean: m[1], lower: lo, upper: up, n: 1}, "reward", COLORS[0]));
          data[2].name = "reward mean (band: ± std)";
        } else if (m) data.push(line(m, "reward mean", COLORS[0]));
        ["grpo/reward/min", "grpo/reward/max"].forEach((k) => { if (get(k)) data.push(line(get(k), k.split("/")[2], "#888", {line: {dash: "dot", width: 1, color: "#888"}})); });
        if (get("eval/reward")) data.push(line(get("eval/reward"), "eval/reward", COLORS[1], {mode: "lines+markers"}));
        return {data: data, layout: {title: {text: "Reward (collapse canary shaded)"}, height: 320, shapes: shade(),
                                     xaxis: {title: {text: "step"}}, legend: {orientation: "h", x: 0, y: -0.3},
                                     margin: {l: 55, r: 15, t: 40, b: 70}}};
      });
      figure(grid, () => {
        const parts = Object.entries(g.decomposition.parts);
        const data = parts.map(([name, xy], i) => ({x: xy[0], y: xy[1], type: "scatter", mode: "lines", stackgroup: "r",
          name: `${name} (w=${g.decomposition.weights[name]})`, line: {color: COLORS[i % COLORS.length], width: 0.5}}));
        if (get("grpo/reward/mean")) data.push(line(get("grpo/reward/mean"), "measured R", "#000", {line: {dash: "dash", color: "#000", width: 1.4}}));
        if (g.decomposition.gate && g.decomposition.gate_rate[0].length) data.push(line(g.decomposition.gate_rate, `gate ${g.decomposition.gate} pass rate (R_A)`, "#555", {yaxis: "y2"}));
        return {data: data, layout: {title: {text: "Decomposition: w_i · mean R_i" + (g.decomposition.gate ? " × R_A" : "")},
          height: 320, yaxis2: {overlaying: "y", side: "right", range: [0, 1], title: {text: "R_A"}}, xaxis: {title: {text: "step"}},
          legend: {orientation: "h", x: 0, y: -0.3}, margin: {l: 55, r: 40, t: 40, b: 70}}};
      });
      g.components.forEach((c) => figure(grid, simple(`component ${c}`, [`grpo/reward/${c}/mean`, `grpo/reward/${c}/std`]), "small"));
      const passes = Object.keys(P.series[run] || {}).filter((k) => k.startsWith("grpo/pass/") || k.startsWith("eval/pass/"));
      if (passes.length) figure(grid, simple("Verifier pass rates", passes), "small");
      figure(grid, simple("Advantage", ["grpo/adv/mean", "grpo/adv/std"]), "small");
      figure(grid, simple("Zero-variance groups / resamples", ["grpo/frac_zero_std", "grpo/resamples"]), "small");
      if (get("grpo/kl")) figure(grid, simple("KL to reference", ["grpo/kl"]), "small");
      figure(grid, simple("Clip ratios", ["grpo/clip_ratio/low", "grpo/clip_ratio/high", "grpo/clip_ratio/region"]), "small");
      figure(grid, simple("Completion length / truncation", ["grpo/completion_len/mean", "grpo/completion_len/max", "grpo/truncated_ratio"]), "small");
      figure(grid, simple("Entropy", ["grpo/entropy"]), "small");
      const weights = Object.keys(P.series[run] || {}).filter((k) => k.startsWith("sampler/") && k.endsWith("_weight"));
      if (weights.length) figure(grid, simple("Task sampler weights", weights), "small");
      const evalRewards = Object.keys(P.series[run] || {}).filter((k) => /^eval\/([^/]+\/)?reward$/.test(k));
      if (evalRewards.length) figure(grid, () => {
        const data = [];
        evalRewards.forEach((k, i) => {
          const m = get(k), ci = get(k + "/ci95");
          if (ci && ci[0].length === m[0].length) {
            data.push(...band({steps: m[0], mean: m[1], lower: m[1].map((v, j) => v - ci[1][j]),
                               upper: m[1].map((v, j) => v + ci[1][j]), n: 0}, k, COLORS[i % COLORS.length]));
            data[data.length - 1].name = k + " ± 95% CI";
          } else data.push(line(m, k, COLORS[i % COLORS.length]));
        });
        return {data: data, layout: {title: {text: "Eval reward per task (± 95% CI over eval prompts)"}, height: 300,
                xaxis: {title: {text: "step"}}, legend: {orientation: "h", x: 0, y: -0.3}, margin: {l: 55, r: 15, t: 40, b: 70}}};
      }, "small");
      if (g.tasks.length) figure(grid, () => ({data: [{type: "bar", x: g.tasks.map((t) => t.task), y: g.tasks.map((t) => t.mean),
        error_y: {type: "data", array: g.tasks.map((t) => t.ci95)}, marker: {color: COLORS[2]},
        text: g.tasks.map((t) => `n=${t.n}`)}], layout: {title: {text: "Final eval reward per task (95% CI)"}, height: 280}}), "small");
    }
    build();
  }

  // ------------------------------------------------------------------ provenance
  if (P.runs.length) {
    const s = panel("provenance", "Provenance", "What the run trained on and with: data products and their " +
      "hashes, arm, seeds, parent checkpoint, git commit (dirty flag), overrides, versions; and the config diff of two runs.");
    const ids = P.runs.map((r) => r.id);
    const pre = el("pre", {class: "kv"});
    const show = (id) => { pre.textContent = JSON.stringify(P.provenance[id], null, 1); };
    const controls = el("div", {class: "controls"}, [select(ids, show, "run")]);
    s.append(controls, pre);
    show(ids[0]);
    const dirty = P.runs.filter((r) => (P.provenance[r.id].git || {}).dirty);
    if (dirty.length) s.appendChild(el("div", {class: "notice", text: `uncommitted code (git dirty): ${dirty.map((r) => r.id).join(", ")}`}));
    if (ids.length > 1) {
      s.appendChild(el("h3", {text: "Config diff"}));
      const out = el("div");
      let a = ids[0], b = ids[1];
      const diff = () => {
        const ca = P.config_table[a] || {}, cb = P.config_table[b] || {};
        const rows = Object.keys(ca).filter((k) => JSON.stringify(ca[k]) !== JSON.stringify(cb[k]))
          .map((k) => el("tr", {}, [td(k, "mono"), td(JSON.stringify(ca[k]), "mono"), td(JSON.stringify(cb[k]), "mono")]));
        out.innerHTML = "";
        out.appendChild(rows.length ? table(["key", a, b], rows, false) : el("p", {class: "empty", text: "identical configurations (seed and paths aside)"}));
      };
      const sa = select(ids, (v) => { a = v; diff(); }, "A"), sb = select(ids, (v) => { b = v; diff(); }, "B");
      sb.querySelector("select").value = b;
      s.append(el("div", {class: "controls"}, [sa, sb]), out);
      diff();
    }
  }

  // ------------------------------------------------------------------ sweeps
  if (P.sweeps.length) {
    const s = panel("sweeps", "Sweeps", "Parameters × objective (coloured by objective); status says which trials " +
      "were pruned or failed (their objective is the last value they reported). Then the optimisation history.");
    P.sweeps.forEach((sw) => {
      s.appendChild(el("h3", {text: `${sw.name}: ${sw.points.length} runs, objective ${sw.metric} (${sw.mode})`}));
      figure(s, () => {
        const dims = sw.columns.map((c) => {
          const vals = sw.points.map((p) => p.params[c]);
          if (vals.every((v) => typeof v === "number")) return {label: c, values: vals};
          const cats = Array.from(new Set(vals.map(String)));
          return {label: c, values: vals.map((v) => cats.indexOf(String(v))), tickvals: cats.map((_, i) => i), ticktext: cats};
        });
        const obj = sw.points.map((p) => p.objective === null ? NaN : p.objective);
        dims.push({label: sw.metric, values: obj});
        const st = Object.keys(STATUS_CODE);
        dims.push({label: "status", values: sw.points.map((p) => STATUS_CODE[p.status] !== undefined ? STATUS_CODE[p.status] : 4),
                   tickvals: [0, 1, 2, 3], ticktext: st, range: [0, 3]});
        const finite = obj.filter((v) => isFinite(v));
        return {data: [{type: "parcoords", dimensions: dims,
          line: {color: obj.map((v) => isFinite(v) ? v : Math.min(...finite, 0)), colorscale: "Viridis", showscale: true,
                 reversescale: sw.mode === "min"}}],
          layout: {title: {text: "Parallel coordinates", y: 0.98, yanchor: "top"}, height: 420,
                   margin: {l: 80, r: 80, t: 90, b: 30}}};
      });
      figure(s, () => {
        const symbols = {finished: "circle", pruned: "x", failed: "triangle-down", running: "diamond"};
        const byStatus = {};
        sw.history.forEach((h) => { (byStatus[h.status] = byStatus[h.status] || []).push(h); });
        const data = Object.entries(byStatus).map(([st, hs], i) => ({x: hs.map((h) => h.trial), y: hs.map((h) => h.objective),
          type: "scatter", mode: "markers", name: st, marker: {size: 10, symbol: symbols[st] || "square", color: COLORS[i % COLORS.length]}}));
        data.push({x: sw.history.map((h) => h.trial), y: sw.history.map((h) => h.best), type: "scatter", mode: "lines",
                   line: {shape: "hv", color: "#000"}, name: "best so far"});
        return {data: data, layout: {title: {text: "Optimisation history"}, height: 380, xaxis: {title: {text: "trial"}, dtick: 1},
                                     yaxis: {title: {text: sw.metric}}}};
      });
    });
  }

  // ------------------------------------------------------------------ learning dynamics
  const dynRuns = Object.keys(P.dynamics);
  if (dynRuns.length) {
    const s = panel("dynamics", "Learning dynamics", "From the observatory's records (observe/): drift from " +
      "init per layer, stability alarms, skills now vs step 0, the probes' embedding map per snapshot, RSA drift, " +
      "calibration, the hard-example board and answer-token log-probs.");
    let run = dynRuns[0];
    const grid = el("div", {class: "grid"});
    const alarms = el("div");
    s.appendChild(el("div", {class: "controls"}, [select(dynRuns, (v) => { run = v; grid.innerHTML = ""; build(); }, "run")]));
    s.append(alarms, grid);
    function build() {
      const D = P.dynamics[run];
      alarms.innerHTML = "";
      if (D.alarms) alarms.appendChild(D.alarms.length
        ? table(["step", "alarm", "layers"], D.alarms.map((a) => el("tr", {}, [td(String(a.step)), td(a.alarm, "st-failed"), td(String(a.layers))])), true)
        : el("p", {class: "empty", text: "no stability alarm raised"}));
      if (D.drift) figure(grid, () => ({data: [{type: "heatmap", x: D.drift.steps, y: D.drift.layers,
        z: D.drift.z.map((row) => row.map((v) => (v === null || v <= 0) ? null : Math.log10(v))), colorscale: "Viridis",
        colorbar: {title: {text: "log10"}}}], layout: {title: {text: "Drift from init ‖W−W₀‖/‖W₀‖ (log10)"}, height: 320,
        margin: {l: 110, r: 15, t: 36, b: 40}}}));
      if (D.radar) figure(grid, () => {
        const keys = Object.keys(D.radar.last.scores);
        const ring = (row, name, color) => ({type: "scatterpolar", r: keys.map((k) => row.scores[k]).concat([row.scores[keys[0]]]),
          theta: keys.concat([keys[0]]), fill: "toself", name: `${name} (step ${row.step})`, line: {color: color}, opacity: 0.7});
        return {data: [ring(D.radar.first, "start", "#999"), ring(D.radar.last, "now", COLORS[0])],
                layout: {title: {text: "Skill radar: now vs step 0"}, height: 320, polar: {radialaxis: {range: [0, 1]}}}};
      });
      if (D.maps) figure(grid, () => {
        const skills = Array.from(new Set(D.maps.flatMap((m) => m.skill)));
        const traces = [];
        D.maps.forEach((m, mi) => skills.forEach((sk, si) => {
          const idx = m.skill.map((v, i) => v === sk ? i : -1).filter((i) => i >= 0);
          traces.push({type: "scatter", mode: "markers", x: idx.map((i) => m.x[i]), y: idx.map((i) => m.y[i]),
            text: idx.map((i) => m.id[i]), name: sk, visible: mi === D.maps.length - 1, legendgroup: sk,
            marker: {size: 6, color: COLORS[si % COLORS.length]}});
        }));
        const steps = D.maps.map((m, mi) => ({label: String(m.step), method: "update",
          args: [{visible: traces.map((_, ti) => Math.floor(ti / skills.length) === mi)}, {}]}));
        return {data: traces, layout: {title: {text: "Probe embedding map (PCA of the last layer)"}, height: 380,
          sliders: [{active: D.maps.length - 1, steps: steps, currentvalue: {prefix: "step "}, pad: {t: 30}}]}};
      });
      if (D.rsa) figure(grid, () => ({data: ["drift", "drift_first", "drift_middle"].map((k, i) =>
        line([D.rsa.step, D.rsa[k]], "RSA " + k, COLORS[i], {mode: "lines+markers"})),
        layout: {title: {text: "RSA geometry drift (1 − r)"}, height: 300, xaxis: {title: {text: "step"}}}}), "small");
      if (D.calibration) figure(grid, () => {
        const bins = (row) => row.bins.filter((b) => b.count > 0);
        const pts = (row, name, color) => ({type: "scatter", mode: "lines+markers", x: bins(row).map((b) => b.conf),
          y: bins(row).map((b) => b.acc), text: bins(row).map((b) => `n=${b.count}`), name: `${name} step ${row.step} (ECE ${fmt(row.ece, 3)})`,
          line: {color: color}});
        return {data: [{x: [0, 1], y: [0, 1], type: "scatter", mode: "lines", line: {dash: "dot", color: "#999"}, name: "perfect"},
                       pts(D.calibration.first, "start", "#999"), pts(D.calibration.last, "now", COLORS[0])],
                layout: {title: {text: "Calibration (reliability diagram)"}, height: 320, xaxis: {title: {text: "confidence"}, range: [0, 1]},
                         yaxis: {title: {text: "accuracy"}, range: [0, 1]}}};
      });
      if (D.board) figure(grid, () => ({data: [{type: "heatmap", x: D.board.steps.map(String), y: D.board.ids,
        z: D.board.ok.map((r) => r.map((v) => v === null ? null : (v ? 1 : 0))), zmin: 0, zmax: 1, showscale: false,
        colorscale: [[0, "#f6c9c5"], [1, "#cdeccf"]], text: D.board.ok.map((r) => r.map((v) => v === null ? "" : (v ? "✓" : "✗"))),
        texttemplate: "%{text}", hovertemplate: "%{y} at step %{x}: %{text}<extra></extra>"}],
        layout: {title: {text: "Hard-example board (✓/✗ per checkpoint)"}, height: Math.max(260, 60 + 20 * D.board.ids.length),
                 margin: {l: 120, r: 15, t: 36, b: 40}, xaxis: {type: "category", title: {text: "step"}}}}));
      if (D.logprob) Object.entries(D.logprob.skills).forEach(([skill, z]) => figure(grid, () => ({data: [{type: "heatmap",
        z: z, x: z[0].map((_, i) => "token " + i), y: D.logprob.steps.map(String), colorscale: "Viridis", zmax: 0,
        colorbar: {title: {text: "log p"}}}], layout: {title: {text: `Answer-token log-prob: ${skill}`}, height: 260,
        xaxis: {type: "category"}, yaxis: {type: "category", title: {text: "step"}}}}), "small"));
    }
    build();
  }

  // ------------------------------------------------------------------ samples
  if (P.samples.length) {
    const s = panel("samples", "Samples", "The last evaluation's completions of each run with their reward " +
      "components; filter by run, task and reward.");
    const tasks = ["(all)"].concat(Array.from(new Set(P.samples.map((x) => x.task))));
    const runsWith = ["(all)"].concat(Array.from(new Set(P.samples.map((x) => x.run))));
    let task = "(all)", run = "(all)", lo = -Infinity, hi = Infinity;
    const lowIn = el("input", {type: "number", step: "0.05", placeholder: "min", style: "width:70px"});
    const highIn = el("input", {type: "number", step: "0.05", placeholder: "max", style: "width:70px"});
    const out = el("div");
    const count = el("span", {class: "why"});
    const render = () => {
      const rows = P.samples.filter((x) => (task === "(all)" || x.task === task) && (run === "(all)" || x.run === run) &&
        (x.reward === null || (x.reward >= lo && x.reward <= hi)));
      count.textContent = `${rows.length} of ${P.samples.length} shown`;
      out.innerHTML = "";
      out.appendChild(table(["run", "step", "task", "prompt", "completion", "reward", "components"], rows.slice(0, 300).map((x) =>
        el("tr", {}, [td(x.run), td(String(x.step), "num"), td(x.task), td(x.prompt, "mono"), td(x.completion, "mono"),
                      td(fmt(x.reward, 3), "num", x.reward),
                      td(Object.entries(x.components).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(" "), "mono")])), true));
    };
    lowIn.addEventListener("input", () => { lo = lowIn.value === "" ? -Infinity : parseFloat(lowIn.value); render(); });
    highIn.addEventListener("input", () => { hi = highIn.value === "" ? Infinity : parseFloat(highIn.value); render(); });
    s.append(el("div", {class: "controls"}, [select(runsWith, (v) => { run = v; render(); }, "run"),
      select(tasks, (v) => { task = v; render(); }, "task"), el("label", {}, ["reward ", lowIn, " – ", highIn]), count]), out);
    render();
  }

  if (!P.runs.length) app.appendChild(el("section", {class: "panel", id: "empty"}, [el("h2", {text: "No runs"}),
    el("p", {text: "Nothing to show: no run directory below the given paths (see the notices)."})]));

  if (window.AEGIR_LIVE) {  // --serve: reload when the page was rebuilt from changed run directories
    let version = null;
    setInterval(() => fetch("version").then((r) => r.text()).then((v) => {
      if (version !== null && v !== version) location.reload();
      version = v;
    }).catch(() => {}), 3000);
  }
  document.body.dataset.ready = "1";
})();
