// The scar's outline on the patient page. Without script a click on the photo (an image button) sends its
// point and the server outlines the scar there; with it, staff can also draw the outline point by point.
(function () {
  "use strict";
  document.querySelectorAll("form.outline-editor").forEach(function (form) {
    var photo = form.querySelector("input[type=image]"), draft = form.querySelector("polyline.draft");
    var width = Number(form.dataset.width), height = Number(form.dataset.height);
    var actions = form.querySelector(".outline-draw-actions"), count = form.querySelector(".outline-count");
    var save = actions.querySelector("button[type=submit]"), points = [];
    form.querySelector(".outline-mode").hidden = false;

    function drawing() { return form.querySelector("input[name=outline_mode]:checked").value === "draw"; }
    function show() {
      var shown = points.length >= 3 ? points.concat([points[0]]) : points;
      draft.setAttribute("points", shown.map(function (p) { return p[0] + "," + p[1]; }).join(" "));
      form.elements.polygon.value = points.length ? JSON.stringify(points) : "";
      save.disabled = points.length < 3;
      count.textContent = points.length ? points.length + " point" + (points.length === 1 ? "" : "s") +
        (points.length < 3 ? " — at least 3 to save." : " — save when the line goes round the scar.") :
        "Click around the scar.";
    }
    form.querySelectorAll("input[name=outline_mode]").forEach(function (radio) {
      radio.addEventListener("change", function () { actions.hidden = !drawing(); });
    });
    photo.addEventListener("click", function (e) {
      var box = photo.getBoundingClientRect();
      form.elements.shown_width.value = box.width;  // a click's position is scaled from the shown size
      if (!drawing()) { return; }  // a tap: the image button sends the point
      e.preventDefault();
      var x = (e.clientX - box.left) * width / box.width, y = (e.clientY - box.top) * height / box.height;
      points.push([Math.round(Math.min(width - 1, Math.max(0, x)) * 10) / 10,
                   Math.round(Math.min(height - 1, Math.max(0, y)) * 10) / 10]);
      show();
    });
    actions.addEventListener("click", function (e) {
      var what = e.target.getAttribute("data-outline");
      if (what === "undo") { points.pop(); show(); }
      if (what === "clear") { points = []; show(); }
    });
  });
})();
