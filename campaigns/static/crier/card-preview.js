// Renders activities (what Teams receives) with the official Adaptive Cards renderer: every element
// with data-activity-source="<id of a json_script>" gets the message drawn inside it.
(function () {
  "use strict";

  function markdown(text, result) {
    if (window.markdownit) {
      result.outputHtml = window.markdownit({ html: false, linkify: true }).render(text);
      result.didProcess = true;
    }
  }

  function render(container, activity) {
    container.textContent = "";
    const attachment = (activity.attachments || [])[0];
    if (attachment && attachment.contentType === "application/vnd.microsoft.card.adaptive" && window.AdaptiveCards) {
      AdaptiveCards.AdaptiveCard.onProcessMarkdown = markdown;
      const card = new AdaptiveCards.AdaptiveCard();
      card.hostConfig = new AdaptiveCards.HostConfig({ fontFamily: "Segoe UI, Helvetica Neue, sans-serif" });
      card.parse(attachment.content);
      const element = card.render();
      if (element) container.appendChild(element);
      return;
    }
    const text = document.createElement("div");
    const result = {};
    markdown(activity.text || "", result);
    if (result.didProcess) text.innerHTML = result.outputHtml; else text.textContent = activity.text || "";
    container.appendChild(text);
  }

  window.CrierCardPreview = { render: render };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-activity-source]").forEach(function (container) {
      const source = document.getElementById(container.dataset.activitySource);
      if (source) render(container, JSON.parse(source.textContent));
    });
  });
})();
