// Times the server writes in UTC (<time class="utc" datetime="...">UTC</time>) shown in the
// browser's own time zone: an agent in Paris reads a call of 00:30 as 00:30, not 23:30 the day
// before. Without JavaScript the page still says "UTC" beside each time.
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localTimes(root) {
    var found = (root || document).querySelectorAll("time.utc[datetime]");
    for (var i = 0; i < found.length; i++) {
      var text = found[i].getAttribute("datetime");
      if (!/(Z|[+-]\d\d:?\d\d)$/.test(text)) { text += "Z"; }  // stored in UTC
      var at = new Date(text);
      if (isNaN(at.getTime())) { continue; }
      var shown = at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate()) + " " +
        pad(at.getHours()) + ":" + pad(at.getMinutes());
      if (found[i].hasAttribute("data-seconds")) { shown += ":" + pad(at.getSeconds()); }
      found[i].textContent = shown;
      found[i].className = "local";
    }
  }

  window.agiLocalTimes = localTimes;
  localTimes(document);
})();
