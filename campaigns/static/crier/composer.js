/*
 * The template composer on the message template page.
 *
 * - For a card: simple fields (title, image, text, buttons) that the server turns into the card
 *   (campaigns/cards.py) when the form is saved; the JSON box follows them (composer.card.js builds
 *   the same card) and "Edit as JSON" opens it. Typing in it hands the card over to the JSON: the
 *   form then says so ("editor" = json), the server forgets the design and the simple fields hide.
 * - Beside each text, a "{{ }}" button that inserts a placeholder at the cursor.
 * - A live preview: a moment after any change, the form's fields are posted (nothing is saved) and
 *   the server answers with the activity the chosen person would receive, rendered by the real
 *   template code; it is drawn here by the official Adaptive Cards renderer (or, for a markdown
 *   message, by markdown-it), with the renderer's own warnings listed under it.
 *
 * Settings come from the page (a json_script element "crier-composer").
 */
(function () {
    "use strict";

    const CARD_KIND = "adaptive_card";
    const DESIGN = "design";
    const JSON_EDITOR = "json";
    const ATTRIBUTE_KEY = /^[A-Za-z0-9_-]{1,64}$/;
    const DELAY_MS = 400;
    const CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive";

    const h = window.CrierDom.h;

    // --- Markdown, as Teams shows it ---------------------------------------------------------------

    // In a card's TextBlock Teams shows only bold, italic, lists and links; in a markdown message,
    // also headings, quotes, code and strike-through. Raw HTML is shown as text in both.
    function markdownRenderers() {
        if (!window.markdownit) {
            return null;
        }
        return {
            card: window.markdownit("zero", {html: false, linkify: true})
                .enable(["list", "emphasis", "link", "linkify", "newline"]),
            message: window.markdownit({html: false, linkify: true}).disable(["table", "image"]),
        };
    }

    // Colours and sizes close to Teams' light theme.
    const HOST_CONFIG = {
        fontFamily: "'Segoe UI', system-ui, -apple-system, 'Helvetica Neue', sans-serif",
        supportsInteractivity: true,
        spacing: {small: 8, default: 12, medium: 16, large: 20, extraLarge: 24, padding: 16},
        fontSizes: {small: 12, default: 14, medium: 14, large: 18, extraLarge: 24},
        fontWeights: {lighter: 200, default: 400, bolder: 600},
        containerStyles: {
            default: {
                backgroundColor: "#FFFFFF",
                foregroundColors: {
                    default: {default: "#242424", subtle: "#616161"},
                    accent: {default: "#5B5FC7", subtle: "#5B5FC7"},
                    good: {default: "#237B4B", subtle: "#237B4B"},
                    warning: {default: "#835B00", subtle: "#835B00"},
                    attention: {default: "#C4314B", subtle: "#C4314B"},
                },
            },
            emphasis: {backgroundColor: "#F5F5F5"},
        },
        actions: {maxActions: 6, spacing: "default", buttonSpacing: 8, actionsOrientation: "horizontal",
            actionAlignment: "stretch", showCard: {actionMode: "inline", inlineTopMargin: 16}},
        imageSizes: {small: 32, medium: 52, large: 100},
    };

    function eventName(event) {
        const names = window.AdaptiveCards && window.AdaptiveCards.ValidationEvent;
        return (names && names[event.event]) || "Note";
    }

    // Draws a card; returns the renderer's own parse and validation messages.
    function drawCard(container, content, renderers) {
        const AC = window.AdaptiveCards;
        if (!AC) {
            container.replaceChildren(h("p", {class: "errornote", text: "The Adaptive Cards renderer did not load."}));
            return [];
        }
        AC.AdaptiveCard.onProcessMarkdown = function (text, result) {
            if (renderers) {
                result.outputHtml = renderers.card.render(text);
                result.didProcess = true;
            }
        };
        const card = new AC.AdaptiveCard();
        card.hostConfig = new AC.HostConfig(HOST_CONFIG);
        card.onExecuteAction = function (action) {
            if (action instanceof AC.OpenUrlAction && action.url) {
                window.open(action.url, "_blank", "noopener");
            }
        };
        const context = new AC.SerializationContext(AC.Versions.v1_5);
        const notes = [];
        try {
            card.parse(content, context);
            for (let i = 0; i < context.eventCount; i++) {
                const event = context.getEventAt(i);
                notes.push(eventName(event) + ": " + event.message);
            }
            card.validateProperties().validationEvents.forEach((event) => {
                notes.push(eventName(event) + ": " + event.message);
            });
            const drawn = card.render();
            container.replaceChildren(drawn || h("p", {text: "The renderer drew nothing for this card."}));
        } catch (error) {
            container.replaceChildren(h("p", {class: "errornote", text: "The renderer failed: " + error.message}));
        }
        return notes;
    }

    function drawMarkdown(container, text, renderers) {
        const message = h("div", {class: "composer-message"});
        if (renderers) {
            message.innerHTML = renderers.message.render(text || "");  // html: false escapes any markup
        } else {
            message.textContent = text || "";
        }
        container.replaceChildren(message);
    }

    // --- Placeholders ------------------------------------------------------------------------------

    function insertAtCursor(input, token) {
        const start = input.selectionStart === null ? input.value.length : input.selectionStart;
        const end = input.selectionEnd === null ? start : input.selectionEnd;
        input.focus();
        input.setRangeText(token, start, end, "end");
        input.dispatchEvent(new Event("input", {bubbles: true}));
    }

    function closeMenus(except) {
        document.querySelectorAll(".composer-insert-menu").forEach((menu) => {
            if (menu !== except && !menu.hidden) {
                menu.hidden = true;
                menu.previousElementSibling.setAttribute("aria-expanded", "false");
            }
        });
    }

    // The "{{ }}" button beside a field, and its menu of recipient fields plus a custom attribute.
    function placeholderButton(input, placeholders) {
        const toggle = h("button", {
            type: "button", class: "composer-insert-toggle", text: "{{ }}", "aria-haspopup": "true",
            "aria-expanded": "false", title: "Insert a placeholder at the cursor: the person's own value",
        });
        const key = h("input", {type: "text", class: "composer-insert-key", placeholder: "attribute key",
            "aria-label": "Custom attribute key", autocomplete: "off"});
        const addCustom = h("button", {type: "button", class: "composer-insert-add", text: "Insert"});
        const problem = h("span", {class: "composer-insert-problem", hidden: true,
            text: "Letters, digits, _ or - only."});
        const menu = h("div", {class: "composer-insert-menu", role: "menu", hidden: true}, [
            ...placeholders.map(([name, label]) => h("button", {
                type: "button", role: "menuitem", "data-token": "{{" + name + "}}", text: label,
                title: "{{" + name + "}}",
            })),
            h("div", {class: "composer-insert-custom"}, [
                h("span", {text: "Custom attribute: "}), key, addCustom, problem,
            ]),
        ]);
        const close = () => {
            menu.hidden = true;
            toggle.setAttribute("aria-expanded", "false");
        };
        toggle.addEventListener("click", () => {
            closeMenus(menu);
            menu.hidden = !menu.hidden;
            toggle.setAttribute("aria-expanded", String(!menu.hidden));
        });
        menu.addEventListener("click", (event) => {
            const token = event.target.dataset && event.target.dataset.token;
            if (token) {
                close();
                insertAtCursor(input, token);
            }
        });
        const insertCustom = () => {
            const name = key.value.trim();
            problem.hidden = ATTRIBUTE_KEY.test(name);
            if (problem.hidden) {
                close();
                key.value = "";
                insertAtCursor(input, "{{attributes." + name + "}}");
            }
        };
        addCustom.addEventListener("click", insertCustom);
        key.addEventListener("keydown", (event) => {
            if (event.key === "Enter") {
                event.preventDefault();  // not the form's submit
                insertCustom();
            }
        });
        menu.addEventListener("keydown", (event) => {
            if (event.key === "Escape") {
                close();
                toggle.focus();
            }
        });
        const wrapper = h("span", {class: "composer-insert"}, [toggle, menu]);
        input.after(wrapper);
    }

    // --- The composer ------------------------------------------------------------------------------

    function Composer(form, config) {
        const $ = (selector) => form.querySelector(selector);
        const kind = $("#id_kind");
        const editor = $("#id_editor");
        const cardBox = $("#id_card");
        const text = $("#id_text");
        const textLabel = form.querySelector('label[for="id_text"]');
        const designSet = $("fieldset.composer-design");
        const jsonSet = $("fieldset.composer-json");
        const jsonNote = $(".composer-json-note");
        const backToDesign = $(".composer-back-to-design");
        const aside = $(".composer-preview");
        const person = $("#composer-person");
        const search = $("#composer-person-search");
        const status = $(".composer-status");
        const errorList = $(".composer-errors");
        const canvas = $("#composer-render");
        const summary = $(".composer-summary");
        const warnings = $(".composer-warnings");
        const activityText = $("#composer-activity");
        const renderers = markdownRenderers();
        const buttons = [];
        for (let n = 1; n <= config.max_buttons; n++) {
            const label = $("#id_button_" + n + "_label");
            const url = $("#id_button_" + n + "_url");
            if (label && url) {
                buttons.push({label: label, url: url, row: label.closest(".form-row")});
            }
        }
        let showingJson = false;
        let dirty = false;

        // Simple fields → design → card (the JSON box follows, while the simple fields lead).
        function design() {
            return {
                title: $("#id_design_title").value,
                image: $("#id_design_image").value,
                body: $("#id_design_body").value,
                buttons: buttons.map((button) => ({label: button.label.value, url: button.url.value})),
            };
        }

        function syncJson() {
            if (editor.value === DESIGN && kind.value === CARD_KIND) {
                cardBox.value = JSON.stringify(window.CrierComposerCard.cardFromDesign(design()), null, 2);
            }
        }

        // Rows with something in them, and one empty row to add a button with.
        function showButtonRows() {
            let offeredEmpty = false;
            buttons.forEach((button) => {
                const empty = !button.label.value.trim() && !button.url.value.trim();
                const hasError = button.row.querySelector(".errorlist");
                button.row.hidden = empty && offeredEmpty && !hasError;
                offeredEmpty = offeredEmpty || empty;
            });
        }

        const jsonToggle = h("button", {type: "button", class: "button composer-edit-json", text: "Edit as JSON"});
        const jsonHint = h("p", {class: "help composer-json-hint", hidden: true,
            text: "Typing in the JSON switches the simple fields off: the card is then saved as written."});
        designSet.append(h("div", {class: "form-row composer-json-row"}, [jsonToggle, jsonHint]));
        jsonToggle.addEventListener("click", () => {
            showingJson = !showingJson;
            syncJson();
            layout();
            if (showingJson) {
                cardBox.focus();
            }
        });
        cardBox.addEventListener("input", () => {
            if (editor.value === DESIGN) {
                editor.value = JSON_EDITOR;  // the card is now what was typed
                layout();
            }
        });
        backToDesign.addEventListener("click", () => {
            editor.value = DESIGN;
            showingJson = false;
            syncJson();
            layout();
            schedule();
        });

        function layout() {
            const isCard = kind.value === CARD_KIND;
            const byHand = editor.value === JSON_EDITOR;
            designSet.hidden = !isCard || byHand;
            jsonSet.hidden = !isCard || (!byHand && !showingJson);
            jsonNote.hidden = !isCard || !byHand;
            jsonHint.hidden = !showingJson;
            jsonToggle.textContent = showingJson ? "Hide the JSON" : "Edit as JSON";
            if (textLabel) {
                textLabel.textContent = isCard ? "Notification summary:" : "Message:";
            }
            showButtonRows();
        }

        // --- The preview

        function option(value, label) {
            return h("option", {value: value, text: label});
        }

        function fillPeople(found) {
            const chosen = person.value;
            const people = config.people;
            const groups = [option("", "A sample person (" + people.sample + ")")];
            if (people.me) {
                groups.push(option(String(people.me.id), "You (" + people.me.name + ")"));
            }
            const others = (found || people.others).filter((one) => !people.me || one.id !== people.me.id);
            if (others.length) {
                groups.push(h("optgroup", {label: found ? "Found" : "People"}, others.map(
                    (one) => option(String(one.id), one.name + (one.detail ? " · " + one.detail : "")))));
            } else if (found) {
                groups.push(h("optgroup", {label: "Nobody found"}));
            }
            person.replaceChildren(...groups);
            if ([...person.options].some((one) => one.value === chosen)) {
                person.value = chosen;
            }
        }

        let searchTimer = null;
        let searchController = null;
        if (search) {
            search.addEventListener("keydown", (event) => {
                if (event.key === "Enter") {
                    event.preventDefault();  // not the form's submit
                }
            });
            search.addEventListener("input", () => {
                clearTimeout(searchTimer);
                searchTimer = setTimeout(async () => {
                    const term = search.value.trim();
                    if (!term) {
                        fillPeople(null);
                        return;
                    }
                    if (searchController) {
                        searchController.abort();
                    }
                    searchController = new AbortController();
                    try {
                        const response = await fetch(config.people_url + "?" + new URLSearchParams({q: term}),
                            {credentials: "same-origin", signal: searchController.signal});
                        if (response.ok) {
                            fillPeople((await response.json()).people);
                        }
                    } catch (error) {
                        if (error.name !== "AbortError") {
                            status.textContent = "Could not search for people.";
                        }
                    }
                }, DELAY_MS);
            });
        }
        person.addEventListener("change", () => refresh());

        function labelOf(name) {
            if (name === "__all__") {
                return "";
            }
            if (name === "preview_recipient") {
                return "As seen by: ";
            }
            const button = /^button_(\d+)_(label|url)$/.exec(name);
            if (button) {
                return "Button " + button[1] + (button[2] === "url" ? " link: " : ": ");
            }
            const label = form.querySelector('label[for="id_' + name + '"]');
            return (label ? label.textContent.replace(/:\s*$/, "") : name) + ": ";
        }

        function showErrors(errors) {
            const items = [];
            Object.entries(errors || {}).forEach(([name, messages]) => {
                messages.forEach((message) => items.push(h("li", {text: labelOf(name) + message})));
            });
            errorList.replaceChildren(...items);
            errorList.hidden = !items.length;
            aside.classList.toggle("composer-stale", items.length > 0);
        }

        function draw(activity) {
            const attachment = (activity.attachments || [])[0];
            let notes = [];
            if (attachment && attachment.contentType === CARD_CONTENT_TYPE) {
                notes = drawCard(canvas, attachment.content, renderers);
            } else {
                drawMarkdown(canvas, activity.text, renderers);
            }
            summary.hidden = !activity.summary;
            summary.textContent = activity.summary ? "Notification: " + activity.summary : "";
            warnings.querySelector("ul").replaceChildren(...notes.map((note) => h("li", {text: note})));
            warnings.hidden = !notes.length;
            activityText.textContent = JSON.stringify(activity, null, 2);
        }

        let timer = null;
        let controller = null;
        let asked = 0;

        function schedule() {
            clearTimeout(timer);
            timer = setTimeout(refresh, DELAY_MS);
        }

        async function refresh() {
            clearTimeout(timer);
            if (controller) {
                controller.abort();
            }
            controller = new AbortController();
            const number = ++asked;
            const body = new FormData(form);
            body.set("preview_recipient", person.value);
            aside.classList.add("composer-busy");
            try {
                const response = await fetch(config.preview_url, {
                    method: "POST", body: body, credentials: "same-origin", signal: controller.signal,
                });
                if (number !== asked) {
                    return;
                }
                const answer = response.headers.get("Content-Type") === "application/json" ? await response.json() : {};
                if (response.ok) {
                    showErrors(null);
                    status.textContent = "As " + answer.recipient + " will see it.";
                    draw(answer.activity);
                } else if (answer.errors) {
                    showErrors(answer.errors);
                    status.textContent = "Not sendable yet: the preview shows the last version that was.";
                } else {
                    status.textContent = "The preview is unavailable (HTTP " + response.status + ").";
                }
            } catch (error) {
                if (error.name !== "AbortError") {
                    status.textContent = "The preview is unavailable: " + error.message;
                }
            } finally {
                if (number === asked) {
                    aside.classList.remove("composer-busy");
                }
            }
        }

        // --- Wiring

        [text, $("#id_design_title"), $("#id_design_body"),
            ...buttons.flatMap((button) => [button.label, button.url])].forEach((input) => {
            if (input) {
                placeholderButton(input, config.placeholders);
            }
        });
        document.addEventListener("click", (event) => {
            if (!event.target.closest(".composer-insert")) {
                closeMenus(null);
            }
        });
        form.addEventListener("input", (event) => {
            if (aside.contains(event.target) || event.target.closest(".composer-insert-custom")) {
                return;  // the person picker and the custom key do not change the message
            }
            dirty = true;
            if (designSet.contains(event.target)) {
                syncJson();
                showButtonRows();
            }
            schedule();
        });
        kind.addEventListener("change", () => {
            syncJson();
            layout();
        });
        const testSend = document.querySelector(".composer-test-send");
        if (testSend) {
            testSend.addEventListener("submit", (event) => {
                if (dirty && !window.confirm("The test sends the saved version: your changes on this page are not " +
                        "in it until you save. Send the saved version?")) {
                    event.preventDefault();
                }
            });
        }

        if (!editor.value) {
            editor.value = config.editor;  // a page sent back with errors keeps what was posted
        }
        fillPeople(null);
        if (editor.value === DESIGN && !form.querySelector(".composer-json .errorlist")) {
            syncJson();
        }
        layout();
        refresh();
    }

    document.addEventListener("DOMContentLoaded", () => {
        const settings = document.getElementById("crier-composer");
        const kind = document.getElementById("id_kind");
        if (!settings || !kind || !kind.form || !document.getElementById("id_editor")) {
            return;  // read-only: the saved version's JSON is on the page
        }
        Composer(kind.form, JSON.parse(settings.textContent));
    });
})();
