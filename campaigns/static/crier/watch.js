/* The campaign watch page: redraws progress, the chart and the reasons from the data endpoint every
   few seconds while the campaign can still change, and stops once it is completed or cancelled. */
"use strict";

(function () {
  const root = document.getElementById("campaign-watch");
  const initial = document.getElementById("watch-data");
  if (!root || !initial) {
    return;
  }
  const dataUrl = root.dataset.url;
  // Times on the chart in the staff member's own time zone (My profile), as everywhere in the admin.
  const zone = root.dataset.zone || undefined;
  const COLORS = { sent: "#2e7d32", failed: "#ba2121", skipped: "#8a8a8a" };
  const LABELS = { sent: "Sent", failed: "Failed", skipped: "Skipped" };
  // Time-axis steps, in minutes: the smallest that gives at most eight labels.
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080];
  let chart = null;
  let failuresInARow = 0;

  function byId(id) {
    return document.getElementById(id);
  }

  function number(value) {
    return Number(value || 0).toLocaleString();
  }

  function setText(id, text) {
    const element = byId(id);
    if (element && element.textContent !== text) {
      element.textContent = text;
    }
  }

  function cell(row, content, className) {
    const td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    if (content instanceof Node) {
      td.appendChild(content);
    } else {
      td.textContent = content;
    }
    row.appendChild(td);
    return td;
  }

  function countCell(reason) {
    if (!reason.url) {
      return number(reason.count);
    }
    const link = document.createElement("a");
    link.href = reason.url;
    link.textContent = number(reason.count);
    return link;
  }

  function fillTable(id, reasons, describe, emptyText) {
    const body = byId(id);
    if (!body) {
      return;
    }
    const rows = [];
    for (const reason of reasons) {
      const row = document.createElement("tr");
      cell(row, countCell(reason), "watch-number");
      cell(row, describe(reason));
      cell(row, reason.meaning);
      cell(row, reason.action);
      rows.push(row);
    }
    if (!rows.length) {
      const row = document.createElement("tr");
      cell(row, emptyText, "watch-quiet").colSpan = 4;
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  function teamsAnswer(reason) {
    const code = document.createElement("code");
    const status = reason.status_code === null ? "no answer" : String(reason.status_code);
    code.textContent = (status + " " + reason.error_code).trim();
    return code;
  }

  function fillActions(actions) {
    const tools = byId("watch-tools");
    if (!tools) {
      return;
    }
    tools.querySelectorAll("li[data-action]").forEach((item) => item.remove());
    const exportItem = byId("watch-export");
    for (const action of actions) {
      const item = document.createElement("li");
      item.dataset.action = action.name;
      const link = document.createElement("a");
      link.href = action.url;
      link.textContent = action.label;
      item.appendChild(link);
      tools.insertBefore(item, exportItem);
    }
  }

  /* Cumulative points, one per minute in which something ended. A flat point is added just before
     each gap, so the line stays level while nothing happens instead of sloping across it. */
  function series(timeline, state) {
    const points = [];
    let previous = null;
    for (const point of timeline) {
      if (previous === null) {
        points.push({ x: (point.minute - 60) * 1000, y: 0 });
      } else if (point.minute - previous.minute > 60) {
        points.push({ x: (point.minute - 60) * 1000, y: previous[state] });
      }
      points.push({ x: point.minute * 1000, y: point[state] });
      previous = point;
    }
    return points;
  }

  function timeLabel(value, spanMs) {
    const options = spanMs > 24 * 3600 * 1000
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: zone }
      : { hour: "2-digit", minute: "2-digit", timeZone: zone };
    return new Date(value).toLocaleString([], options);
  }

  function minuteTicks(scale) {
    const span = scale.max - scale.min;
    const minutes = STEPS.find((step) => span / (step * 60000) <= 8) || Math.ceil(span / 8 / 86400000) * 1440;
    const step = minutes * 60000;
    const ticks = [];
    for (let value = Math.ceil(scale.min / step) * step; value <= scale.max; value += step) {
      ticks.push({ value: value });
    }
    scale.ticks = ticks;
  }

  function drawChart(timeline) {
    const empty = byId("watch-chart-empty");
    if (empty) {
      empty.hidden = timeline.length > 0;
    }
    const canvas = byId("watch-chart");
    if (!canvas || typeof window.Chart === "undefined") {
      return;
    }
    if (canvas.parentNode) {
      canvas.parentNode.hidden = timeline.length === 0;
    }
    if (!timeline.length && !chart) {
      return;
    }
    const datasets = Object.keys(LABELS).map((state) => ({
      label: LABELS[state],
      data: series(timeline, state),
      borderColor: COLORS[state],
      backgroundColor: COLORS[state],
      pointRadius: 0,
      borderWidth: 2,
      tension: 0,
    }));
    if (chart) {
      datasets.forEach((dataset, index) => {
        chart.data.datasets[index].data = dataset.data;
      });
      chart.update("none");
      return;
    }
    chart = timeChart(canvas, datasets, "");
  }

  /* A line chart over time, in the staff member's time zone; ``titlePrefix`` goes before a point's time. */
  function timeChart(canvas, datasets, titlePrefix) {
    return new window.Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        parsing: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            bounds: "data",
            afterBuildTicks: minuteTicks,
            ticks: {
              callback: function (value) {
                return timeLabel(value, this.max - this.min);
              },
            },
          },
          y: { beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: {
          tooltip: {
            callbacks: {
              title: (items) => (items.length
                ? titlePrefix + new Date(items[0].parsed.x).toLocaleString([], { timeZone: zone }) : ""),
            },
          },
        },
      },
    });
  }

  function render(data) {
    const progress = data.progress;
    setText("watch-status", data.status_display);
    setText("watch-status-reason", data.status_reason ? ": " + data.status_reason : "");
    // A welcome campaign has no percentage (its audience grows as people arrive): no bar is drawn.
    const percent = data.percent === null ? "" : Number(data.percent).toFixed(1) + "%";
    const bar = byId("progress-bar");
    if (bar) {
      bar.max = Math.max(1, progress.total);
      bar.value = progress.total ? data.done : (data.finished ? 1 : 0);
      bar.textContent = percent;
    }
    setText("progress-percent", percent);
    setText("progress-done", data.summary);
    for (const name of ["sent", "read", "acknowledged", "clicked", "failed", "skipped", "remaining", "ambiguous"]) {
      setText("count-" + name, number(progress[name]));
    }
    const reactions = (data.reactions || []).map((reaction) => reaction.kind + " " + number(reaction.count));
    setText("reactions", reactions.length ? reactions.join(" · ") : "none yet");
    if (data.poll_results) {
      setText("poll-answered", number(data.poll_results.answered));
      data.poll_results.options.forEach((option, n) => {
        setText("poll-count-" + n, number(option.count));
        setText("poll-percent-" + n, Number(option.percent).toFixed(1) + "%");
        const bar = byId("poll-bar-" + n);
        if (bar) {
          bar.value = option.percent;
        }
      });
    }
    setText("rate", Number(progress.rate_per_second).toFixed(1));
    setText("time-left", data.time_left || "—");
    fillTable("failure-reasons", data.failure_reasons, teamsAnswer, "No failures.");
    fillTable("skip-reasons", data.skip_reasons, (reason) => reason.label, "Nobody skipped.");
    fillActions(data.actions);
    drawChart(data.timeline);
  }

  // The funnel: sent, read, acknowledged and answered by the field chosen, a share of those sent.
  const funnel = byId("watch-funnel");
  function share(count, of) {
    return number(count) + (of ? " (" + Math.round((100 * count) / of) + "%)" : "");
  }
  function drawFunnel(result) {
    const body = byId("funnel-rows");
    body.replaceChildren();
    for (const group of result.groups) {
      const row = document.createElement("tr");
      const cells = [group.value, number(group.sent), share(group.read, group.sent)];
      if (result.acknowledgement) {
        cells.push(share(group.acknowledged, group.sent));
      }
      if (result.poll) {
        cells.push(share(group.answered, group.sent));
      }
      if (result.clicks) {
        cells.push(share(group.clicked, group.sent));
      }
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
  }
  // The funnel over time: cumulative people by the end of each hour, drawn as steps.
  const FUNNEL_COLORS = { sent: "#2e7d32", read: "#1565c0", acknowledged: "#6a1b9a", answered: "#ef6c00",
                          clicked: "#00838f" };
  const FUNNEL_LABELS = { sent: "Sent", read: "Read", acknowledged: "Acknowledged", answered: "Answered",
                          clicked: "Opened a link" };
  let funnelChart = null;
  function drawFunnelOverTime(result) {
    const canvas = byId("funnel-chart");
    const points = result.over_time || [];
    setText("funnel-chart-empty", points.length ? "" : "Nothing has happened yet.");
    byId("funnel-chart-empty").hidden = points.length > 0;
    if (!canvas || typeof window.Chart === "undefined") {
      return;
    }
    canvas.parentNode.hidden = points.length === 0;
    const kinds = ["sent", "read"].concat(result.acknowledgement ? ["acknowledged"] : [],
                                          result.poll ? ["answered"] : [], result.clicks ? ["clicked"] : []);
    const datasets = kinds.map((kind) => ({
      label: FUNNEL_LABELS[kind],
      data: points.map((point) => ({ x: (point.hour + 3600) * 1000, y: point[kind] })),
      borderColor: FUNNEL_COLORS[kind],
      backgroundColor: FUNNEL_COLORS[kind],
      pointRadius: 0,
      borderWidth: 2,
      stepped: true,
    }));
    if (funnelChart) {
      funnelChart.data.datasets = datasets;
      funnelChart.update("none");
      return;
    }
    funnelChart = timeChart(canvas, datasets, "By ");
  }
  // One request at a time, every few refreshes: a funnel is a GROUP BY over the campaign's rows.
  const FUNNEL_EVERY = 5;
  let funnelLoading = false;
  let refreshesSinceFunnel = 0;
  function loadFunnel() {
    if (!funnel || funnelLoading) {
      return;
    }
    const select = byId("funnel-by");
    const by = select.value;
    funnelLoading = true;
    refreshesSinceFunnel = 0;
    setText("funnel-heading", select.options[select.selectedIndex].text);
    fetch(funnel.dataset.url + "?by=" + encodeURIComponent(by),
          { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
      .then((result) => {
        if (result.by === select.value) { // an answer for a grouping no longer chosen is dropped
          drawFunnel(result);
          drawFunnelOverTime(result);
        }
      })
      .catch(() => setText("funnel-heading", "Could not load the funnel"))
      .finally(() => {
        funnelLoading = false;
        if (select.value !== by) {
          loadFunnel();
        }
      });
  }

  function schedule(data) {
    if (!data.poll) {
      setText("watch-updated", "");
      return;
    }
    // Slower after failed refreshes (a restarting server), and not at all while the tab is hidden.
    const seconds = (data.poll_seconds || 2) * Math.min(5, 1 + failuresInARow);
    window.setTimeout(() => refresh(data), seconds * 1000);
  }

  function refresh(last) {
    if (document.hidden) {
      schedule(last);
      return;
    }
    fetch(dataUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => {
        if (!response.ok) {
          throw new Error("the server answered " + response.status);
        }
        if (!(response.headers.get("Content-Type") || "").includes("application/json")) {
          throw new Error("you may have been signed out: reload the page");
        }
        return response.json();
      })
      .then((data) => {
        failuresInARow = 0;
        render(data);
        refreshesSinceFunnel += 1;
        if (refreshesSinceFunnel >= FUNNEL_EVERY) {
          loadFunnel();
        }
        setText("watch-updated", data.poll ? "Updated " + new Date().toLocaleTimeString([], { timeZone: zone }) : "");
        schedule(data);
      })
      .catch((error) => {
        failuresInARow += 1;
        setText("watch-updated", "Could not refresh (" + error.message + "); trying again.");
        schedule(last);
      });
  }

  function start() {
    const data = JSON.parse(initial.textContent);
    render(data);
    if (funnel) {
      byId("funnel-by").addEventListener("change", loadFunnel);
      loadFunnel();
    }
    schedule(data);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
