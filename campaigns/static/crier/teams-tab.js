// The personal tab in Teams (campaigns/teams_tab.py). Inside Teams, "Sign in with Microsoft" opens the sign-in in
// a window Teams manages (Entra ID's page refuses to be framed) and, once it ends on /tab/signed-in/, shows the
// admin in the tab. Outside Teams, or when Teams' library does not answer, the button stays an ordinary link.
(function () {
  "use strict";
  var teams = window.microsoftTeams;

  function inTeams() {
    if (!teams || !teams.app) { return Promise.reject(new Error("not in Teams")); }
    var timeout = new Promise(function (resolve, reject) { setTimeout(function () { reject(new Error("no answer")); }, 3000); });
    return Promise.race([teams.app.initialize(), timeout]);
  }

  function tab() {
    var data = document.getElementById("crier-tab-settings");
    var button = document.getElementById("tab-sign-in");
    if (!data || !button) { return; }
    var settings = JSON.parse(data.textContent);
    inTeams().then(function () {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        teams.authentication.authenticate({ url: window.location.origin + settings.signIn, width: 600, height: 640 })
          .then(function () { window.location.assign(settings.admin); })
          .catch(function (error) {
            var shown = document.getElementById("tab-sign-in-error");
            shown.textContent = "The sign-in did not finish (" + (error && error.message || error) + "): try again.";
            shown.hidden = false;
          });
      });
    }, function () { /* outside Teams: the link signs in in this window */ });
  }

  function signedIn() {
    inTeams().then(function () { teams.authentication.notifySuccess("signed-in"); }, function () {
      window.location.assign(document.querySelector("a").getAttribute("href"));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.getAttribute("data-signed-in")) { signedIn(); } else { tab(); }
  });
}());
