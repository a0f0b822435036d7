// Draws the report's charts from the JSON embedded in the page; the numbers are also in a table
// beside each chart. When done, body[data-charts-ready] holds the number of charts drawn and
// window.reportMarks the marks each chart drew (the browser tests read both).
(function () {
  "use strict";
  var COLORS = {
    answered: "#2e7d32", cancelled: "#9e9e9e", busy: "#f9a825", no_answer: "#fbc02d", rejected: "#ef6c00",
    not_found: "#8d6e63", unavailable: "#ffb74d", congestion: "#c62828", network: "#ad1457", auth: "#6a1b9a",
    config: "#4527a0", media: "#283593", billing: "#00838f", policy: "#00695c", protocol: "#5d4037",
    system: "#b71c1c", transfer: "#78909c", unknown: "#455a64", other: "#bdbdbd",
    count: "#c62828", legs: "#1565c0", collapsed: "#6a1b9a", overruled: "#ef6c00", incomplete: "#455a64"
  };
  var charts = JSON.parse(document.getElementById("report-data").textContent);
  var print = window.matchMedia && window.matchMedia("print").matches;
  Chart.defaults.animation = false;          // drawn at once: printable and testable
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.maintainAspectRatio = false;

  // Alerts as vertical lines on the time axis (Chart.js has no annotation built in).
  var alertMarks = {
    id: "alertMarks",
    afterDatasetsDraw: function (chart, args, opts) {
      var marks = opts.marks || [];
      if (!marks.length) return;
      var x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx;
      ctx.save();
      marks.forEach(function (m) {
        var px = x.getPixelForValue(m.index);
        ctx.strokeStyle = m.state === "resolved" ? "#067647" : "#b42318";
        ctx.setLineDash(m.state === "resolved" ? [4, 3] : []);
        ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(px, area.top); ctx.lineTo(px, area.bottom); ctx.stroke();
      });
      ctx.restore();
    }
  };

  var marks = {};
  var drawn = 0;
  charts.forEach(function (spec) {
    var canvas = document.getElementById("chart-" + spec.id);
    if (!canvas || !spec.labels.length) { marks[spec.id] = 0; return; }
    var horizontal = spec.type === "hbar";
    var stacked = spec.type === "timeline";
    var chart = new Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (s) {
          return { label: s.name, data: s.values, backgroundColor: COLORS[s.key] || "#1565c0", borderWidth: 0 };
        })
      },
      options: {
        indexAxis: horizontal ? "y" : "x",
        responsive: !print,
        interaction: { mode: stacked ? "index" : "nearest", intersect: !stacked },
        scales: {
          x: { stacked: stacked, ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 16 } },
          y: { stacked: stacked, beginAtZero: true, ticks: { precision: 0, autoSkip: !horizontal } }
        },
        plugins: {
          legend: { display: spec.series.length > 1, position: "bottom" },
          alertMarks: { marks: spec.marks || [] }
        }
      },
      plugins: [alertMarks]
    });
    marks[spec.id] = chart.data.datasets.reduce(function (n, d, i) {
      return n + chart.getDatasetMeta(i).data.filter(function (el, k) { return d.data[k] > 0; }).length;
    }, 0);
    drawn += 1;
  });
  // Printing shows every table: open the collapsed ones first.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details.numbers").forEach(function (d) { d.open = true; });
  });
  window.reportMarks = marks;
  document.body.setAttribute("data-charts-ready", String(drawn));
})();
