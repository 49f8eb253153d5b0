/* The campaign form's live panel: each time the audience, the template or the kind changes (and on
   opening), asks the admin's live endpoint how many people the audience reaches today, what the
   template's message looks like and whether another campaign has the name (when only the name
   changes, a pause in typing asks for the name's warning alone); draws the message
   with the Adaptive Cards renderer (crier/card-preview.js) and warns under the name. Nothing is
   saved. Settings come from the "crier-campaign-live" json_script. */
"use strict";

(function () {
  const settings = document.getElementById("crier-campaign-live");
  const panel = document.getElementById("campaign-live");
  if (!settings || !panel) {
    return;
  }
  const config = JSON.parse(settings.textContent);
  const name = document.getElementById("id_name");
  const fields = {
    audience: document.getElementById("id_audience"),
    template: document.getElementById("id_template"),
    kind: document.getElementById("id_kind"),
  };
  const reach = document.getElementById("campaign-live-reach");
  const sample = document.getElementById("campaign-live-sample");
  const heading = document.getElementById("campaign-live-recipient");
  const status = document.getElementById("campaign-live-message-status");
  const card = document.getElementById("campaign-live-card");
  let asked = 0; // only the latest question's answer is shown
  let namesAsked = 0; // likewise for the name's warning alone
  let typing = null;
  const nameWarning = document.createElement("p");
  nameWarning.id = "campaign-live-name";
  nameWarning.className = "help crier-name-warning";
  nameWarning.setAttribute("role", "status");
  nameWarning.hidden = true;
  if (name) {
    name.insertAdjacentElement("afterend", nameWarning);
  }

  function say(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  function showReach(answer) {
    reach.textContent = answer.text;
    const more = answer.count - answer.sample.length;
    say(sample, answer.sample.length
      ? "Among them: " + answer.sample.join(", ") + (more > 0 ? " and " + more.toLocaleString() + " more." : ".")
      : "");
  }

  function showMessage(answer) {
    if (answer.error) {
      heading.textContent = "The message";
      say(status, answer.error);
      card.hidden = true;
      card.textContent = "";
      return;
    }
    heading.textContent = "The message, as " + answer.recipient + " receives it";
    say(status, "");
    card.hidden = false;
    if (window.CrierCardPreview) {
      window.CrierCardPreview.render(card, answer.activity);
    } else {
      card.textContent = answer.activity.text || "";
    }
  }

  function showError(message) {
    reach.textContent = message;
    say(sample, "");
  }

  // what: "name" when only the name changed: only its warning is asked for and shown.
  async function refresh(what) {
    const onlyName = what === "name";
    const params = new URLSearchParams({
      name: name ? name.value : "",
      campaign: config.campaign || "",
      audience: fields.audience ? fields.audience.value : "",
      template: fields.template ? fields.template.value : "",
      kind: fields.kind ? fields.kind.value : config.kind || "",
    });
    if (onlyName) {
      params.set("only", "name");
      const asking = ++namesAsked;
      try {
        const response = await fetch(config.url + "?" + params, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        const answer = await response.json();
        if (response.ok && asking === namesAsked) {
          say(nameWarning, answer.name_warning);
        }
      } catch (error) {
        // The warning is advice only: the next answer brings it.
      }
      return;
    }
    const question = ++asked;
    panel.classList.add("crier-counting");
    try {
      const response = await fetch(config.url + "?" + params, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const answer = await response.json();
      if (question !== asked) {
        return;
      }
      if (!response.ok) {
        showError((answer.error && answer.error.message) || "Could not count the people (HTTP " + response.status + ").");
        return;
      }
      say(nameWarning, answer.name_warning);
      showReach(answer.reach);
      showMessage(answer.message);
    } catch (error) {
      if (question === asked) {
        showError("Could not count the people (" + error.message + ").");
      }
    } finally {
      if (question === asked) {
        panel.classList.remove("crier-counting");
      }
    }
  }

  for (const field of Object.values(fields)) {
    if (field) {
      field.addEventListener("change", () => refresh());
    }
  }
  if (name) {
    // A moment after typing stops, and when the field is left.
    name.addEventListener("input", () => {
      window.clearTimeout(typing);
      typing = window.setTimeout(() => refresh("name"), 400);
    });
    name.addEventListener("change", () => refresh("name"));
  }
  refresh();
})();
