// The dashboard's charts: each <canvas data-chart="id"> reads its figures from <script type="application/json"
// id="id"> and draws them with Chart.js. The numbers are also in each card's summary and table.
(function () {
  "use strict";
  const colours = ["#0b6fa4", "#c2410c", "#067647", "#7c3aed", "#b42318", "#a16207", "#0e7490", "#4b5563"];

  function datasetsOf(spec) {
    const mixed = spec.datasets.some((d) => d.kind === "percent" || d.kind === "score" || d.kind === "minutes")
      && spec.datasets.some((d) => d.kind === "count" || d.kind === "points");
    return spec.datasets.map((d, i) => {
      const colour = colours[i % colours.length];
      const second = mixed && (d.kind === "count" || d.kind === "points") && spec.type === "line";
      const asBar = spec.type === "bar" || spec.type === "stacked" || spec.type === "categories"
        || (spec.type === "line" && second);
      return {
        label: d.label,
        data: d.data,
        type: asBar ? "bar" : "line",
        borderColor: colour,
        backgroundColor: asBar ? colour + "cc" : colour,
        borderWidth: asBar ? 0 : 2,
        pointRadius: d.data.length > 60 ? 1 : 2,
        spanGaps: false,
        yAxisID: second ? "y2" : "y",
        order: asBar ? 2 : 1,
      };
    });
  }

  function draw(canvas) {
    const source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    const spec = JSON.parse(source.textContent);
    const datasets = datasetsOf(spec);
    const stacked = spec.type === "stacked";
    const scales = {
      x: { stacked: stacked, ticks: { maxRotation: 0, autoSkip: true } },
      y: { stacked: stacked, beginAtZero: true },
    };
    if (datasets.some((d) => d.yAxisID === "y2")) {
      scales.y2 = { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } };
    }
    if (spec.key === "points") {  // outstanding is a line on its own axis
      datasets[3].type = "line";
      datasets[3].yAxisID = "y2";
      datasets[3].backgroundColor = datasets[3].borderColor;
      datasets[3].borderWidth = 2;
      datasets[3].order = 1;
      scales.y2 = { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } };
    }
    new Chart(canvas, {
      type: spec.type === "line" ? "line" : "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: spec.type !== "categories", position: "bottom", labels: { boxWidth: 12 } } },
        scales: scales,
      },
    });
  }

  document.querySelectorAll("canvas[data-chart]").forEach(draw);
})();
