/*
 * The audience editor on the audience change page.
 *
 * - The rules as rows (field, operator, value), written as JSON into the form's own "rules"
 *   textarea, which stays (folded, "Edit as JSON") for whoever prefers to type JSON: the form
 *   posts as ever and the server's validation is the only judge.
 * - A live count and sample of the people the form's current definition selects, asked of the
 *   server (nothing is saved) a moment after the kind, the rules, the group or team, or the lists
 *   change; for a group or team, with a note of what the count stands on.
 *
 * Settings come from the page (a json_script element "crier-audience-editor").
 */
(function () {
    "use strict";

    const RULES_KIND = "rules";
    const CUSTOM = "__custom__";
    const ATTRIBUTE_PREFIX = "attributes.";
    const LIST_OPS = ["in", "not_in"];
    const WORDS = {eq: "is", neq: "is not", in: "is one of", not_in: "is not one of"};
    const DATE_WORDS = {gte: "on or after", lte: "on or before"};
    const ATTRIBUTE_WORDS = {gte: "is at least", lte: "is at most"};
    const DELAY_MS = 400;

    const h = window.CrierDom.h;

    function operatorsFor(field) {
        if (field === "start_date") {
            return {...WORDS, ...DATE_WORDS};
        }
        if (field.startsWith(ATTRIBUTE_PREFIX)) {
            return {...WORDS, ...ATTRIBUTE_WORDS};
        }
        return WORDS;
    }

    /* A rule as the rows show it, or null when the rows cannot show it (the JSON view still can). */
    function toRow(rule) {
        if (!rule || typeof rule !== "object" || Array.isArray(rule)) {
            return null;
        }
        const keys = Object.keys(rule).sort().join(",");
        const simple = (v) => typeof v === "string" || (typeof v === "number" && Number.isInteger(v));
        if (keys !== "field,op,value" || typeof rule.field !== "string" || typeof rule.op !== "string") {
            return null;
        }
        const list = LIST_OPS.includes(rule.op);
        if (list ? !(Array.isArray(rule.value) && rule.value.every(simple)) : !simple(rule.value)) {
            return null;
        }
        if (!(rule.op in operatorsFor(rule.field))) {
            return null; // e.g. "on or after" on a department: the JSON view shows it, the server refuses it
        }
        const values = list ? rule.value : [rule.value];
        return {
            field: rule.field,
            op: rule.op,
            text: values.map(String).join(list ? ", " : ""),
            numeric: values.length > 0 && values.every((v) => typeof v === "number"),
        };
    }

    function toRule(row) {
        const number = (text) => (row.numeric && /^-?\d+$/.test(text) ? Number(text) : text);
        const value = LIST_OPS.includes(row.op)
            ? row.text.split(",").map((part) => part.trim()).filter(Boolean).map(number)
            : number(row.text.trim());
        return {field: row.field, op: row.op, value: value};
    }

    /* The rows for a rules text, or null if it is not JSON the rows can show. */
    function parseRules(text) {
        if (!text.trim()) {
            return [];
        }
        let rules;
        try {
            rules = JSON.parse(text);
        } catch (error) {
            return null;
        }
        if (rules === null) {
            return [];
        }
        if (!Array.isArray(rules)) {
            return null;
        }
        const rows = rules.map(toRow);
        return rows.includes(null) ? null : rows;
    }

    function RuleEditor(textarea, config, onChange) {
        const fieldLabels = new Map(config.fields);
        const keyPattern = new RegExp("^(?:" + config.attribute_key_pattern + ")$");
        const body = h("tbody");
        const table = h("table", {class: "crier-rules-table"}, [
            h("thead", {}, [h("tr", {}, [
                h("th", {scope: "col", text: "Field"}), h("th", {scope: "col", text: "Condition"}),
                h("th", {scope: "col", text: "Value"}), h("th", {scope: "col"}, [
                    h("span", {class: "visually-hidden", text: "Remove"}),
                ]),
            ])]),
            body,
        ]);
        const empty = h("p", {class: "crier-rules-empty", text: "No rules yet: add one."});
        const unreadable = h("p", {
            class: "crier-rules-unreadable",
            text: "These rules cannot be shown as rows: edit them as JSON below.",
            hidden: true,
        });
        const add = h("button", {type: "button", class: "button crier-rules-add", text: "Add a rule"});
        const json = h("details", {class: "crier-rules-json"}, [h("summary", {text: "Edit as JSON"})]);
        const lists = Object.entries(config.suggestions || {}).map(([field, values]) =>
            h("datalist", {id: "crier-values-" + field}, values.map((value) => h("option", {value: value})))
        );
        const root = h("div", {class: "crier-rules"}, [unreadable, table, empty, add, json, ...lists]);
        let rows = [];

        textarea.replaceWith(root);
        json.append(textarea);

        function write() {
            textarea.value = JSON.stringify(rows.map(toRule), null, 2);
            onChange();
        }

        function operatorSelect(row) {
            const words = operatorsFor(row.field);
            if (!(row.op in words)) {
                row.op = "eq";
            }
            const select = h("select", {"aria-label": "Condition", class: "crier-rule-op"},
                Object.entries(words).map(([op, word]) => h("option", {value: op, text: word})));
            select.value = row.op;
            return select;
        }

        function valueInput(row) {
            const list = LIST_OPS.includes(row.op);
            const attributes = {"aria-label": "Value", class: "crier-rule-value", value: row.text};
            if (list) {
                attributes.type = "text";
                attributes.placeholder = row.field === "start_date"
                    ? "2025-01-31, 2025-02-28" : "comma-separated: A, B, C";
            } else if (row.field === "start_date") {
                attributes.type = "date";
            } else {
                attributes.type = "text";
                if ((config.suggestions || {})[row.field]) {
                    attributes.list = "crier-values-" + row.field;
                }
            }
            return h("input", attributes);
        }

        function rowElement(row) {
            const custom = row.field.startsWith(ATTRIBUTE_PREFIX) || row.field === CUSTOM;
            const field = h("select", {"aria-label": "Field", class: "crier-rule-field"}, [
                ...config.fields.map(([name, label]) => h("option", {value: name, text: label})),
                h("option", {value: CUSTOM, text: "Custom attribute…"}),
            ]);
            if (!custom && !fieldLabels.has(row.field)) {
                // A field this page does not know: kept as it is, for the server to judge.
                field.prepend(h("option", {value: row.field, text: row.field}));
            }
            field.value = custom ? CUSTOM : row.field;
            const key = h("input", {
                type: "text", class: "crier-rule-key", "aria-label": "Attribute key",
                placeholder: "attribute key", hidden: !custom,
                value: row.field.startsWith(ATTRIBUTE_PREFIX) ? row.field.slice(ATTRIBUTE_PREFIX.length) : "",
            });
            const op = operatorSelect(row);
            const value = valueInput(row);
            const remove = h("button", {type: "button", class: "crier-rule-remove", title: "Remove this rule",
                "aria-label": "Remove this rule", text: "×"});
            const tr = h("tr", {}, [
                h("td", {}, [field, " ", key]), h("td", {}, [op]), h("td", {}, [value]), h("td", {}, [remove]),
            ]);

            function checkKey() {
                const valid = !key.value || keyPattern.test(key.value.trim());
                key.setCustomValidity(valid ? "" : "Letters, digits, _ and - only (at most 64).");
            }

            function redraw(focus) {
                const fresh = rowElement(row);
                tr.replaceWith(fresh);
                const target = fresh.querySelector(focus);
                if (target) {
                    target.focus();
                }
            }

            field.addEventListener("change", () => {
                if (field.value === CUSTOM) {
                    row.field = ATTRIBUTE_PREFIX;
                    write();
                    redraw(".crier-rule-key");
                    return;
                }
                const wasDate = row.field === "start_date";
                row.field = field.value;
                row.numeric = false;
                if (wasDate !== (row.field === "start_date")) {
                    row.text = "";
                }
                write();
                redraw(".crier-rule-field");
            });
            key.addEventListener("input", () => {
                checkKey();
                row.field = ATTRIBUTE_PREFIX + key.value.trim();
                write();
            });
            op.addEventListener("change", () => {
                const wasList = LIST_OPS.includes(row.op);
                row.op = op.value;
                if (wasList !== LIST_OPS.includes(row.op) && row.field === "start_date") {
                    row.text = "";
                }
                write();
                redraw(".crier-rule-op");
            });
            value.addEventListener("input", () => {
                row.text = value.value;
                write();
            });
            remove.addEventListener("click", () => {
                rows = rows.filter((other) => other !== row);
                write();
                render();
                (body.querySelector(".crier-rule-remove") || add).focus();
            });
            checkKey();
            return tr;
        }

        function render() {
            body.replaceChildren(...rows.map(rowElement));
            table.hidden = rows.length === 0;
            empty.hidden = rows.length > 0;
        }

        /* Shows the textarea's rules as rows, if they can be; otherwise says so and opens the JSON. */
        function read() {
            const parsed = parseRules(textarea.value);
            const readable = parsed !== null;
            unreadable.hidden = readable;
            add.disabled = !readable;
            if (readable) {
                rows = parsed;
                render();
            } else {
                table.hidden = true;
                empty.hidden = true;
                json.open = true;
            }
        }

        add.addEventListener("click", () => {
            const first = config.fields.length ? config.fields[0][0] : "department";
            rows.push({field: first, op: "eq", text: "", numeric: false});
            write();
            render();
            const last = body.lastElementChild;
            if (last) {
                last.querySelector(".crier-rule-value").focus();
            }
        });
        textarea.addEventListener("input", () => {
            read();
            onChange();
        });
        read();
        return {read: read};
    }

    function Preview(config, form, kind, textarea) {
        const result = h("div", {class: "crier-audience-preview", "aria-live": "polite"});
        const row = h("div", {class: "form-row crier-audience-preview-row"}, [
            h("div", {}, [h("div", {class: "flex-container"}, [
                h("label", {text: "As edited:"}), result,
            ])]),
        ]);
        const anchor = form.querySelector(".field-people") || form.querySelector(".field-people_file");
        if (anchor) {
            anchor.before(row);
        } else {
            kind.closest(".form-row").after(row);
        }
        let timer = null;
        let latest = 0;

        function show(answer) {
            if (answer.errors && answer.errors.length) {
                result.replaceChildren(h("ul", {class: "errorlist"},
                    answer.errors.map((message) => h("li", {text: message}))));
                return;
            }
            const count = answer.count;
            const children = [];
            if (count !== null) {
                const words = count === 1 ? "1 person selected" : count.toLocaleString() + " people selected";
                children.push(h("strong", {text: words}));
            }
            if (answer.note) {
                children.push(h("p", {class: "help crier-audience-note", text: answer.note}));
            }
            if (answer.sample.length) {
                children.push(h("ul", {class: "crier-audience-sample"},
                    answer.sample.map((name) => h("li", {text: name}))));
                if (count !== null && count > answer.sample.length) {
                    children.push(h("p", {class: "help",
                        text: "and " + (count - answer.sample.length).toLocaleString() + " more"}));
                }
            }
            const file = form.querySelector("input[name=people_file]");
            if (file && file.files && file.files.length) {
                children.push(h("p", {class: "help", text: "The CSV file's people are counted once it is saved."}));
            }
            result.replaceChildren(...children);
        }

        async function ask() {
            const asked = ++latest;
            const data = new URLSearchParams();
            data.set("csrfmiddlewaretoken", form.querySelector("input[name=csrfmiddlewaretoken]").value);
            data.set("kind", kind.value);
            data.set("rules", kind.value === RULES_KIND ? textarea.value : "[]");
            if (config.audience) {
                data.set("audience", config.audience);
            }
            const source = document.getElementById("id_source_id");
            if (source && source.tagName === "INPUT") {
                data.set("source_id", source.value);
            }
            ["members", "excluded"].forEach((name) => {
                const select = document.getElementById("id_" + name);
                if (select && select.tagName === "SELECT") {
                    data.set(name, Array.from(select.selectedOptions).map((option) => option.value).join(","));
                }
            });
            result.classList.add("crier-counting");
            try {
                const response = await fetch(config.preview_url, {
                    method: "POST", body: data, credentials: "same-origin",
                    headers: {"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"},
                });
                if (!response.ok) {
                    throw new Error("the server answered " + response.status);
                }
                const answer = await response.json();
                if (asked === latest) {
                    show(answer);
                }
            } catch (error) {
                if (asked === latest) {
                    show({errors: ["Could not count the people (" + error.message + ")."]});
                }
            } finally {
                if (asked === latest) {
                    result.classList.remove("crier-counting");
                }
            }
        }

        function soon() {
            clearTimeout(timer);
            timer = setTimeout(ask, DELAY_MS);
        }

        result.textContent = "Counting…";
        ask();
        return {soon: soon};
    }

    function start() {
        const settings = document.getElementById("crier-audience-editor");
        const textarea = document.getElementById("id_rules");
        const kind = document.getElementById("id_kind");
        if (!settings || !textarea || !kind || textarea.tagName !== "TEXTAREA") {
            return; // a read-only page
        }
        const config = JSON.parse(settings.textContent);
        const form = textarea.form;
        const rulesRow = textarea.closest(".form-row");
        let preview = null;
        const changed = () => preview && preview.soon();
        const editor = RuleEditor(textarea, config, changed);
        let setAside = null; // the rules of a rules audience, while another kind is chosen

        const noRules = (text) => {
            const parsed = parseRules(text);
            return parsed !== null && parsed.length === 0;
        };

        /* Rules belong to the rules kind: choosing another kind sets them aside (and back again). */
        function showRules(initial) {
            const rules = kind.value === RULES_KIND;
            if (!initial && !rules) {
                if (!noRules(textarea.value)) {
                    setAside = textarea.value;
                }
                textarea.value = "[]";
                editor.read();
            } else if (!initial && setAside !== null && noRules(textarea.value)) {
                textarea.value = setAside;
                setAside = null;
                editor.read();
            }
            // Rules left on another kind (the server refused them) stay in sight, with the error.
            rulesRow.classList.toggle("hidden", !rules && noRules(textarea.value));
        }

        kind.addEventListener("change", () => {
            showRules(false);
            changed();
        });
        ["members", "excluded"].forEach((name) => {
            const select = document.getElementById("id_" + name);
            if (!select) {
                return;
            }
            select.addEventListener("change", changed);
            // The admin's autocomplete (select2) announces its changes through jQuery only.
            if (window.django && window.django.jQuery) {
                window.django.jQuery(select).on("change", changed);
            }
        });
        const file = form.querySelector("input[name=people_file]");
        if (file) {
            file.addEventListener("change", changed);
        }
        const source = document.getElementById("id_source_id");
        if (source) {
            source.addEventListener("change", changed); // a group or team chosen (audience-source.js) or typed
        }
        showRules(true);
        preview = Preview(config, form, kind, textarea);
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();
