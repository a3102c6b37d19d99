// Progressive enhancement only: every form works without this script.
document.addEventListener("DOMContentLoaded", function () {
  // Pre-select the browser's time zone on a fresh signup form, when it is one we list.
  var select = document.querySelector("select[data-autofill-zone]");
  if (select && window.Intl) {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) {
        select.value = zone;
        break;
      }
    }
  }
});
