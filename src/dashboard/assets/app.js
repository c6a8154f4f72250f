// Outbound dashboard: the CSV upload with a progress bar, and the campaign form's channel-only
// sections (htmx does the rest).
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

// The new-campaign form: the sections of the other channel are hidden and not sent (the API
// refuses a channel-only field of the other channel); without this script all are shown.
function showChannel(select) {
  var option = select.options[select.selectedIndex];
  var channel = option ? option.getAttribute("data-channel") : null;
  document.querySelectorAll("[data-only-channel]").forEach(function (section) {
    var off = channel !== null && section.getAttribute("data-only-channel") !== channel;
    section.hidden = off;
    section.querySelectorAll("input, select, textarea").forEach(function (input) { input.disabled = off; });
  });
}
document.addEventListener("change", function (event) {
  if (event.target.matches("select[data-channel-select]")) showChannel(event.target);
});
document.addEventListener("DOMContentLoaded", function () {
  var select = document.querySelector("select[data-channel-select]");
  if (select) showChannel(select);
});
