/*
 * The group or team of an audience, on the audience change page: for "An Entra ID group", a search by
 * name (the server asks Microsoft Graph) whose results fill the form's group id and name; for "The
 * members of a team", a choice among the teams Crier's bot is in. The form's own fields stay, and post
 * as ever: the server's validation is the only judge. The rows show only for those two kinds.
 *
 * Settings come from the page (a json_script element "crier-audience-editor").
 */
(function () {
    "use strict";

    const GROUP = "entra_group";
    const TEAM = "team";
    const DELAY_MS = 350;
    const h = window.CrierDom.h;

    function start() {
        const settings = document.getElementById("crier-audience-editor");
        const kind = document.getElementById("id_kind");
        const sourceId = document.getElementById("id_source_id");
        const sourceName = document.getElementById("id_source_name");
        if (!settings || !kind || !sourceId || !sourceName || sourceId.tagName !== "INPUT") {
            return; // a read-only page
        }
        const config = JSON.parse(settings.textContent);
        const idRow = sourceId.closest(".form-row");
        const nameRow = sourceName.closest(".form-row");

        function choose(id, name) {
            sourceId.value = id;
            sourceName.value = name;
            sourceId.dispatchEvent(new Event("change", {bubbles: true}));
        }

        // The team picker.
        const teamSelect = h("select", {id: "crier-team-choice", "aria-label": "Team"}, [
            h("option", {value: "", text: config.teams.length ? "Choose a team…" : "Crier's bot is in no team yet"}),
            ...config.teams.map(([id, name]) => h("option", {value: id, text: name})),
        ]);
        teamSelect.value = config.teams.some(([id]) => id === sourceId.value) ? sourceId.value : "";
        teamSelect.addEventListener("change", () => {
            const picked = config.teams.find(([id]) => id === teamSelect.value);
            choose(picked ? picked[0] : "", picked ? picked[1] : "");
        });
        const teamPicker = h("div", {class: "crier-source-picker"}, [
            teamSelect,
            h("p", {class: "help", text: "Add the app to a team in Teams, and it appears here."}),
        ]);

        // The group search.
        const search = h("input", {
            type: "search", id: "crier-group-search", placeholder: "Search groups by name", autocomplete: "off",
            "aria-label": "Search groups by name",
        });
        const results = h("ul", {class: "crier-source-results", "aria-live": "polite"});
        const groupPicker = h("div", {class: "crier-source-picker"}, [search, results]);
        let timer = null;
        let latest = 0;

        async function find() {
            const asked = ++latest;
            const term = search.value.trim();
            if (!term) {
                results.replaceChildren();
                return;
            }
            try {
                const response = await fetch(config.groups_url + "?" + new URLSearchParams({q: term}), {
                    credentials: "same-origin", headers: {"Accept": "application/json"},
                });
                if (!response.ok) {
                    throw new Error("the server answered " + response.status);
                }
                const answer = await response.json();
                if (asked !== latest) {
                    return;
                }
                if (answer.errors.length) {
                    results.replaceChildren(...answer.errors.map((text) => h("li", {class: "errornote", text: text})));
                } else if (!answer.groups.length) {
                    results.replaceChildren(h("li", {text: "No group's name has a word starting with “" + term + "”."}));
                } else {
                    results.replaceChildren(...answer.groups.map((group) => {
                        const label = group.name + (group.dynamic ? " (dynamic)" : "")
                            + (group.description ? " — " + group.description : "");
                        const button = h("button", {type: "button", class: "button crier-source-choice", text: label});
                        button.addEventListener("click", () => {
                            choose(group.id, group.name);
                            results.replaceChildren(h("li", {text: "Chosen: " + group.name}));
                        });
                        return h("li", {}, [button]);
                    }));
                }
            } catch (error) {
                if (asked === latest) {
                    results.replaceChildren(h("li", {class: "errornote", text: "Could not search (" + error.message + ")."}));
                }
            }
        }

        search.addEventListener("input", () => {
            clearTimeout(timer);
            timer = setTimeout(find, DELAY_MS);
        });
        search.addEventListener("keydown", (event) => {
            if (event.key === "Enter") {
                event.preventDefault(); // searching, not saving
                clearTimeout(timer);
                find();
            }
        });

        sourceId.before(groupPicker, teamPicker);

        const setAside = {}; // by kind: the group or team chosen for it, while another kind is
        let shown = kind.value;

        /* A group or team belongs to its kind: choosing another kind sets it aside (and back again). */
        function show(initial) {
            const listed = kind.value === GROUP || kind.value === TEAM;
            if (!initial && kind.value !== shown) {
                if (sourceId.value) {
                    setAside[shown] = [sourceId.value, sourceName.value];
                }
                const back = setAside[kind.value];
                choose(back ? back[0] : "", back ? back[1] : "");
                delete setAside[kind.value];
                teamSelect.value = kind.value === TEAM && back ? back[0] : "";
                shown = kind.value;
            }
            // A group or team left on another kind (the server refused it) stays in sight, with the error.
            idRow.classList.toggle("hidden", !listed && !sourceId.value);
            nameRow.classList.toggle("hidden", !listed && !sourceName.value);
            groupPicker.hidden = kind.value !== GROUP;
            teamPicker.hidden = kind.value !== TEAM;
        }

        kind.addEventListener("change", () => show(false));
        show(true);
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();
