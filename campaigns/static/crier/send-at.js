// “Send at” is typed in the staff member's own time zone (data-zone); this shows its UTC equivalent
// under the field as it is typed, so nobody schedules an announcement for the wrong hour.
(function () {
  "use strict";

  // The zone's offset from UTC, in minutes, at the given instant.
  function offsetMinutes(zone, instant) {
    const parts = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(instant).forEach(function (part) { parts[part.type] = part.value; });
    const asUtc = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    return Math.round((asUtc - instant.getTime()) / 60000);
  }

  // The instant at which the wall clock in `zone` shows the given date and time.
  function wallTimeToInstant(zone, year, month, day, hour, minute) {
    const naive = Date.UTC(year, month - 1, day, hour, minute);
    let instant = new Date(naive - offsetMinutes(zone, new Date(naive)) * 60000);
    instant = new Date(naive - offsetMinutes(zone, instant) * 60000); // settle across a DST change
    return instant;
  }

  function parse(dateText, timeText) {
    const date = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(dateText.trim());
    const time = /^(\d{1,2}):(\d{2})(?::\d{2})?$/.exec(timeText.trim());
    if (!date || !time) return null;
    return [+date[1], +date[2], +date[3], +time[1], +time[2]];
  }

  function setUp() {
    const marker = document.getElementById("send-at-zone");
    const dateInput = document.getElementById("id_send_at_0");
    const timeInput = document.getElementById("id_send_at_1");
    if (!marker || !dateInput || !timeInput) return;
    const zone = marker.dataset.zone;
    const out = document.createElement("div");
    out.className = "help";
    out.id = "send-at-utc";
    (timeInput.closest(".form-row") || timeInput.parentNode).appendChild(out);
    function update() {
      const wall = parse(dateInput.value, timeInput.value);
      if (!wall) { out.textContent = "Type a date (YYYY-MM-DD) and a time (HH:MM) in " + zone + "."; return; }
      const instant = wallTimeToInstant(zone, wall[0], wall[1], wall[2], wall[3], wall[4]);
      out.textContent = "In " + zone + ". That is " + instant.toISOString().slice(0, 16).replace("T", " ") + " UTC.";
    }
    ["input", "change", "blur"].forEach(function (type) {
      dateInput.addEventListener(type, update);
      timeInput.addEventListener(type, update);
    });
    // The admin's calendar and clock pickers set the value without an input event.
    setInterval(update, 1000);
    update();
  }

  document.addEventListener("DOMContentLoaded", setUp);
})();
