package report

import "html/template"

// pageTmpl is parsed at init so that a broken template fails every test
// and every run immediately rather than at the end of a long pruning job.
var pageTmpl = template.Must(template.New("report").Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gopruner">
<title>{{.Title}}</title>
<style>
{{.FontCSS}}
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--soft:#f6f8fa;--accent:#2166ac}
*{box-sizing:border-box}
body{margin:0;background:var(--soft);color:var(--fg);font:15px/1.5 "Liberation Sans",system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:0 0 8px}
section{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:18px 20px;margin:16px 0}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0 0}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;font-family:ui-monospace,"Liberation Mono",Menlo,monospace;font-size:13px;word-break:break-all}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td.name{font-family:ui-monospace,"Liberation Mono",Menlo,monospace;font-size:13px;white-space:normal;word-break:break-all}
thead th{background:var(--soft);font-weight:600}
tbody tr:hover{background:#f0f6fc}
tr.pruned td.kept{color:var(--accent);font-weight:600}
tr.kept td{font-weight:600}
tfoot td{font-weight:600;border-top:2px solid var(--line)}
.wide{white-space:normal}
figure{margin:0}
figure svg.plot{display:block;max-width:100%;height:auto;margin:8px auto 0}
figcaption{color:var(--muted);font-size:14px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:6px 0 0;padding:0;list-style:none;font-size:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;border-radius:2px}
.error{color:#b3261e;font-weight:600}
ul.notes{margin:0;padding-left:20px}
details summary{cursor:pointer;font-weight:600}
footer{color:var(--muted);font-size:13px;text-align:center}
</style>
</head>
<body data-plots="pending" data-plots-expected="{{.NumPlots}}">
<main>
<section>
<h1>{{.Title}}</h1>
{{- with .Meta}}
<dl class="meta">
{{- range .}}
<dt>{{.Key}}</dt><dd>{{.Value}}</dd>
{{- end}}
</dl>
{{- end}}
</section>
{{- if or .Summary .Latency .LatTgt}}
<section id="summary">
<h2>Summary</h2>
{{- with .Summary}}
<table>
<thead><tr><th></th><th>Before</th><th>After</th><th>Change</th></tr></thead>
<tbody>
{{- range .}}
<tr><td>{{.Name}}</td><td title="{{.BeforeExact}}">{{.Before}}</td><td title="{{.AfterExact}}">{{.After}}</td><td>{{.Change}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}
{{- with .Latency}}
<h2 style="margin-top:16px">Latency</h2>
<table>
<thead><tr><th>Device</th><th>Batch</th><th>Before</th><th>After</th><th>Speed-up</th></tr></thead>
<tbody>
{{- range .}}
<tr><td>{{.Device}}</td><td>{{.Batch}}</td><td>{{.Before}}</td><td>{{.After}}</td><td>{{.Speedup}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}
{{- with .LatTgt}}
<h2 style="margin-top:16px">Latency target: predicted vs measured</h2>
<table id="latency-target">
<thead><tr><th>{{.Setting}}</th><th>Before</th><th>After</th></tr></thead>
<tbody>
<tr><td>predicted (lookup table)</td><td>{{.PredBefore}}</td><td>{{.PredAfter}}</td></tr>
<tr><td>measured</td><td>{{.MeasBefore}}</td><td>{{.MeasAfter}}</td></tr>
<tr><td>prediction error (measured − predicted) / predicted</td><td></td><td>{{.Error}}</td></tr>
<tr><td>speed-up error (measured after/before vs predicted after/before)</td><td></td><td>{{.SpeedupError}}</td></tr>
</tbody>
</table>
<p>Table: {{.Table}}.</p>
{{- end}}
</section>
{{- end}}
{{- with .Notes}}
<section id="notes">
<h2>Notes</h2>
<ul class="notes">
{{- range .}}
<li>{{.}}</li>
{{- end}}
</ul>
</section>
{{- end}}
{{- range .Figures}}
<section>
<figure class="plot" id="{{.ID}}">
<h2>{{.Title}}</h2>
<figcaption>{{.Caption}}</figcaption>
{{- with .Legend}}
<ul class="legend">
{{- range .}}
<li><i style="{{.Style}}"></i>{{.Label}}</li>
{{- end}}
</ul>
{{- end}}
{{- if .Err}}
<p class="error">{{.Err}}</p>
{{- else}}
{{.SVG}}
{{- end}}
</figure>
</section>
{{- end}}
{{- with .Layers}}
<section id="layers">
<h2>Channels per layer</h2>
<table>
<thead><tr><th>Layer</th><th>Before</th><th>After</th><th>Kept</th></tr></thead>
<tbody>
{{- range .}}
<tr{{if .Pruned}} class="pruned"{{end}}><td class="name">{{.Name}}</td><td>{{.Before}}</td><td>{{.After}}</td><td class="kept">{{.Kept}}</td></tr>
{{- end}}
</tbody>
{{- with $.Totals}}
<tfoot><tr><td>{{.Name}}</td><td>{{.Before}}</td><td>{{.After}}</td><td>{{.Kept}}</td></tr></tfoot>
{{- end}}
</table>
</section>
{{- end}}
{{- with .Iters}}
<section id="iterations">
<details>
<summary>Iterations ({{len .}})</summary>
<table>
<thead><tr><th>#</th><th>MACs</th><th>% of original</th><th>Accuracy</th><th class="wide">Step</th></tr></thead>
<tbody>
{{- range .}}
<tr><td>{{.Iteration}}</td><td>{{.MACs}}</td><td>{{.MACsPct}}</td><td>{{.Accuracy}}</td><td class="name">{{.Label}}</td></tr>
{{- end}}
</tbody>
</table>
</details>
</section>
{{- end}}
{{- with .Cands}}
<section id="candidates">
<details>
<summary>Candidates ({{len .}})</summary>
<p>Every candidate of every iteration, the kept one in bold. ± is the binomial standard error of the accuracy, sqrt(p(1−p)/n) over the n validation samples: candidates closer than about two of it are not told apart by the validation. Removed is the share of the original MACs the cut takes away.</p>
<table>
<thead><tr><th>#</th><th class="wide">Candidate</th><th>MACs</th><th>Removed</th><th>Accuracy</th><th>±</th><th>Train loss</th><th>Time</th><th>Slot</th></tr></thead>
<tbody>
{{- range .}}
<tr{{if .Kept}} class="kept"{{end}}><td>{{if .First}}{{.Iteration}}{{end}}</td><td class="name">{{.Name}}</td><td>{{.MACs}}</td><td>{{.Removed}}</td><td>{{.Accuracy}}</td><td>{{.SE}}</td><td>{{.Loss}}</td><td>{{.Seconds}}</td><td>{{.Slot}}</td></tr>
{{- end}}
</tbody>
</table>
</details>
</section>
{{- end}}
<footer>Generated by gopruner</footer>
</main>
<script>
// Records whether every plot laid out with a visible size; headless
// browser tests read the result from the DOM.
window.addEventListener("load", function () {
  var figs = document.querySelectorAll("figure.plot");
  var bad = [];
  figs.forEach(function (f) {
    var svg = f.querySelector("svg.plot");
    var ok = false;
    try { ok = !!svg && svg.getBBox().width > 0 && svg.getBoundingClientRect().width > 0; } catch (e) {}
    if (!ok) { bad.push(f.id || "?"); }
  });
  document.body.dataset.plots = bad.length ? "fail:" + bad.join(",") : "ok:" + figs.length;
});
</script>
</body>
</html>
`
