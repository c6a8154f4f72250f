// Outbound dashboard: the CSV upload with a progress bar (htmx does the rest).
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.matches("form[data-upload]")) return;
  event.preventDefault();
  var bar = form.querySelector("progress");
  var result = document.getElementById(form.dataset.upload);
  var request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.setRequestHeader("X-CSRF-Token", form.querySelector("input[name=csrf]").value);
  request.upload.addEventListener("progress", function (e) {
    if (e.lengthComputable && bar) { bar.max = e.total; bar.value = e.loaded; }
  });
  request.addEventListener("load", function () {
    if (bar) { bar.value = bar.max; }
    result.innerHTML = request.responseText;
  });
  request.addEventListener("error", function () {
    result.textContent = "The upload did not reach the server; try again.";
  });
  request.send(new FormData(form));
});

// Forms with `data-confirm` (revoke a key, delete a webhook) ask first.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});
