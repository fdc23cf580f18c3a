// Upload with a progress bar. The file goes to the JSON API as multipart/form-data with
// the session's CSRF token in a header; the server streams it into encryption.
(function () {
  var form = document.getElementById("upload");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    bar.hidden = false;
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = function () {
      if (xhr.status === 201) {
        status.textContent = "Uploaded and encrypted.";
        window.location.reload();
      } else {
        var msg = "Upload failed (" + xhr.status + ")";
        try { msg = JSON.parse(xhr.responseText).error.message; } catch (e) {}
        status.textContent = msg;
      }
    };
    xhr.onerror = function () { status.textContent = "Upload failed: connection lost."; };
    xhr.send(new FormData(form));
  });
})();
