// The admin scripts' one DOM helper: h("tag", {attributes, text}, [children]) builds an element.
// "text" sets its text (never HTML); a property the element has (e.g. hidden, checked) is set as a
// property when given a non-string; true is an empty attribute; null, undefined and false are left out.
(function () {
    "use strict";

    function h(tag, attributes, children) {
        const node = document.createElement(tag);
        Object.entries(attributes || {}).forEach(([name, value]) => {
            if (value === null || value === undefined || value === false) {
                return;
            }
            if (name === "text") {
                node.textContent = value;
            } else if (name in node && typeof value !== "string") {
                node[name] = value;
            } else {
                node.setAttribute(name, value === true ? "" : value);
            }
        });
        (children || []).forEach((child) => node.append(child));
        return node;
    }

    window.CrierDom = {h: h};
})();
