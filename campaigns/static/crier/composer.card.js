/*
 * The card the template composer's simple fields build: the same card, property for property, as
 * campaigns/cards.py card_from_design builds on the server (which is what is saved; a test compares
 * the two). Used in the page to fill the JSON box, so "Edit as JSON" starts from the current card.
 *
 * In the page: window.CrierComposerCard. Under Node (the test): module.exports.
 */
(function (root) {
    "use strict";

    const CARD_VERSION = "1.5";
    const MAX_BUTTONS = 6;

    function text(value) {
        return value === null || value === undefined ? "" : String(value).trim();
    }

    // The fields, trimmed, with empty button rows dropped.
    function normalise(design) {
        design = design || {};
        const buttons = (design.buttons || [])
            .map((button) => ({label: text(button && button.label), url: text(button && button.url)}))
            .filter((button) => button.label || button.url);
        return {title: text(design.title), image: text(design.image), body: text(design.body), buttons: buttons};
    }

    // A large title, a full-width image, the markdown text, a link button for each button row.
    function cardFromDesign(design) {
        design = normalise(design);
        const body = [];
        if (design.title) {
            body.push({type: "TextBlock", text: design.title, size: "Large", weight: "Bolder", style: "heading",
                wrap: true});
        }
        if (design.image) {
            body.push({type: "Image", url: design.image, size: "Stretch", altText: design.title});
        }
        if (design.body) {
            body.push({type: "TextBlock", text: design.body, wrap: true});
        }
        const card = {type: "AdaptiveCard", version: CARD_VERSION, body: body};
        if (design.buttons.length) {
            card.actions = design.buttons.slice(0, MAX_BUTTONS).map(
                (button) => ({type: "Action.OpenUrl", title: button.label, url: button.url}));
        }
        card.msteams = {width: "Full"};
        return card;
    }

    const api = {CARD_VERSION: CARD_VERSION, MAX_BUTTONS: MAX_BUTTONS, normalise: normalise,
        cardFromDesign: cardFromDesign};
    if (typeof module === "object" && module.exports) {
        module.exports = api;
    } else {
        root.CrierComposerCard = api;
    }
})(this);
