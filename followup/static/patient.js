// The patient's upload page: live camera with a see-through guide, an on-device check for blur and
// darkness, downscaling to about 2048 px, upload with a progress bar, and retake. Without this script the
// page is a plain form with a file input, which works just as well.
(function () {
  "use strict";
  var MAX_SIDE = 2048;
  var DARK_MEAN = 55;        // mean grey level (0–255) below which the photo is too dark
  var BLUR_VARIANCE = 12;    // Laplacian variance at 320 px wide below which the photo looks blurred

  function $(id) { return document.getElementById(id); }

  // --- The page after sending: look again until the check has finished.
  var sentState = $("sent-state");
  if (sentState && sentState.dataset.state === "checking") {
    var poll = function () {
      fetch(sentState.dataset.poll, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.state !== "checking") { window.location.reload(); } else { setTimeout(poll, 2000); }
        })
        .catch(function () { setTimeout(poll, 4000); });
    };
    setTimeout(poll, 1500);
  }

  var form = $("upload-form");
  if (!form) { return; }
  var fileInput = $("photo");
  var preview = $("preview");
  var previewImg = $("preview-img");
  var check = $("check");
  var progressBox = $("progress-box");
  var progress = $("progress");
  var sendError = $("send-error");
  var sendButton = $("send");
  var blob = null;          // the downscaled photo to send
  var usedCamera = false;
  var stream = null;

  function showError(text) {
    sendError.textContent = text;
    sendError.hidden = !text;
  }

  // --- On-device check: mean brightness and the variance of the Laplacian (sharpness).
  function quality(canvas) {
    var w = 320, h = Math.max(1, Math.round(canvas.height * 320 / canvas.width));
    var small = document.createElement("canvas");
    small.width = w; small.height = h;
    var ctx = small.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(canvas, 0, 0, w, h);
    var px = ctx.getImageData(0, 0, w, h).data;
    var grey = new Float32Array(w * h), sum = 0;
    for (var i = 0, j = 0; i < px.length; i += 4, j++) {
      grey[j] = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
      sum += grey[j];
    }
    var mean = sum / (w * h), lsum = 0, lsq = 0, n = 0;
    for (var y = 1; y < h - 1; y++) {
      for (var x = 1; x < w - 1; x++) {
        var k = y * w + x;
        var lap = grey[k - 1] + grey[k + 1] + grey[k - w] + grey[k + w] - 4 * grey[k];
        lsum += lap; lsq += lap * lap; n++;
      }
    }
    var variance = n ? lsq / n - (lsum / n) * (lsum / n) : 0;
    var problems = [];
    if (mean < DARK_MEAN) { problems.push("The photo looks too dark — turn on a light or move near a window."); }
    if (variance < BLUR_VARIANCE) { problems.push("The photo looks blurred — hold the phone still and tap the screen to focus."); }
    return problems;
  }

  function downscale(source, width, height) {
    var scale = Math.min(1, MAX_SIDE / Math.max(width, height));
    var canvas = document.createElement("canvas");
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
    return canvas;
  }

  function accept(canvas) {
    var problems = quality(canvas);
    canvas.toBlob(function (result) {
      if (!result) { blob = null; return; }
      blob = result;
      if (previewImg.src) { URL.revokeObjectURL(previewImg.src); }
      previewImg.src = URL.createObjectURL(result);
      preview.hidden = false;
      check.className = "check-result " + (problems.length ? "warn" : "ok");
      check.textContent = "";
      var head = document.createElement("p");
      head.textContent = problems.length ? "This photo may be hard to use:" : "The photo looks sharp and bright enough.";
      check.appendChild(head);
      problems.forEach(function (text) {
        var p = document.createElement("p");
        p.textContent = text;
        check.appendChild(p);
      });
      if (problems.length) {
        var hint = document.createElement("p");
        hint.textContent = "Please retake it, or send it anyway.";
        check.appendChild(hint);
      }
      showError("");
    }, "image/jpeg", 0.92);
  }

  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    blob = null;
    if (!file) { preview.hidden = true; return; }
    usedCamera = false;
    var url = URL.createObjectURL(file);
    var img = new Image();
    img.onload = function () {
      accept(downscale(img, img.naturalWidth, img.naturalHeight));
      URL.revokeObjectURL(url);
    };
    img.onerror = function () {
      // The browser cannot show this format (e.g. some HEIC): send the file as it is; the server converts it.
      URL.revokeObjectURL(url);
      preview.hidden = true;
    };
    img.src = url;
  });

  // --- Live camera with the first photo as a see-through guide.
  var camera = $("camera"), video = $("camera-video"), ghost = $("ghost"), opacity = $("ghost-opacity");
  var canUseCamera = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext);
  if (canUseCamera) { $("camera-offer").hidden = false; }
  if (ghost && opacity) {
    var setOpacity = function () { ghost.style.opacity = String(opacity.value / 100); };
    opacity.addEventListener("input", setOpacity);
    setOpacity();
  }

  function stopCamera() {
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
    camera.hidden = true;
    $("camera-offer").hidden = false;
  }

  function openCamera() {
    navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1440 } },
      audio: false
    }).then(function (s) {
      stream = s;
      video.srcObject = s;
      camera.hidden = false;
      $("camera-offer").hidden = true;
      preview.hidden = true;
      camera.scrollIntoView({ block: "start" });
      return video.play();
    }).then(function () { $("snap").focus(); })
      .catch(function () {
        showError("The camera could not be opened here. Use the button “Take or choose a photo” instead.");
        stopCamera();
      });
  }

  if (canUseCamera) {
    $("camera-open").addEventListener("click", openCamera);
    $("camera-close").addEventListener("click", function () { stopCamera(); fileInput.focus(); });
    $("snap").addEventListener("click", function () {
      if (!video.videoWidth) { return; }
      usedCamera = true;
      fileInput.value = "";
      accept(downscale(video, video.videoWidth, video.videoHeight));
      stopCamera();
    });
  }

  $("retake").addEventListener("click", function () {
    blob = null;
    preview.hidden = true;
    fileInput.value = "";
    if (usedCamera && canUseCamera) { openCamera(); } else { fileInput.click(); }
  });

  // --- Sending with a progress bar; the server answers with where to look for the result.
  form.addEventListener("submit", function (event) {
    if (!blob) {
      if (!fileInput.files || !fileInput.files.length) {
        event.preventDefault();
        showError("Take or choose a photo first.");
      }
      return; // the browser sends the original file itself
    }
    event.preventDefault();
    var data = new FormData(form);
    data.set("photo", blob, "photo.jpg");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { progress.value = Math.round(100 * e.loaded / e.total); }
    });
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status === 200 && body && body.status_url) {
        progress.value = 100;
        window.location.assign(body.status_url);
        return;
      }
      sendButton.disabled = false;
      progressBox.hidden = true;
      showError(body && body.errors ? body.errors.join(" ") : "The photo could not be sent. Please try again.");
    };
    xhr.onerror = function () {
      sendButton.disabled = false;
      progressBox.hidden = true;
      showError("No connection. Please check your signal and press Send again.");
    };
    sendButton.disabled = true;
    progress.value = 0;
    progressBox.hidden = false;
    showError("");
    xhr.send(data);
  });
})();
