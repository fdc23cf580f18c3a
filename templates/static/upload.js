// Upload with a progress bar. The file goes to the JSON API as multipart/form-data with
// the session's CSRF token in a header; the server streams it into encryption. Once it is
// stored, the page goes to the record's files with a confirmation; a refusal is shown
// beside the file input. The messages come from the form (in the page's language).
(function () {
  var form = document.getElementById("upload");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    var input = document.getElementById("f-file");
    var error = document.getElementById("e-file");
    var fail = function (msg) {
      error.textContent = msg;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      bar.hidden = true;
    };
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    bar.hidden = false;
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = function () {
      if (xhr.status === 201) {
        status.textContent = form.dataset.done;
        var id = "";
        try { id = JSON.parse(xhr.responseText).id; } catch (e) {}
        window.location.href = "/records/" + form.dataset.record + "/uploaded/" + encodeURIComponent(id);
      } else {
        var msg = form.dataset.failed + " (" + xhr.status + ")";
        try { msg = JSON.parse(xhr.responseText).error.message; } catch (e) {}
        fail(msg);
      }
    };
    xhr.onerror = function () { fail(form.dataset.lost); };
    xhr.send(new FormData(form));
  });
})();
