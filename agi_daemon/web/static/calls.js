// The call window: redraw the cards each time the daemon says this agent's calls changed.
(function () {
  "use strict";
  var cards = document.getElementById("cards");
  var live = document.getElementById("live");
  var delay = 500;
  var SILENCE_MS = 60000;

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws");
    var silence = null;
    function heard() {  // the daemon writes at least every 25 s: silence means a dead link
      clearTimeout(silence);
      silence = setTimeout(function () { socket.close(); }, SILENCE_MS);
    }
    socket.onopen = function () {
      delay = 500;
      heard();
    };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      heard();
      if (data.tracking === false) {  // the daemon's link to the PBX is down: no new call shows
        live.textContent = live.dataset.untracked;
        live.className = "live untracked";
      } else {
        live.textContent = live.dataset.online;
        live.className = "live on";
      }
      if (data.html === undefined) { return; }  // only "still here"
      var typing = document.activeElement && cards.contains(document.activeElement) &&
        document.activeElement.tagName === "INPUT" ? document.activeElement : null;
      var kept = typing ? { card: typing.closest(".card").dataset.linkedid, value: typing.value } : null;
      cards.innerHTML = data.html;
      if (window.agiLocalTimes) { window.agiLocalTimes(cards); }
      if (kept) {  // a redraw must not eat the name the agent is typing
        var again = cards.querySelector('.card[data-linkedid="' + kept.card + '"] input[name="name"]');
        if (again) { again.value = kept.value; again.focus(); }
      }
    };
    socket.onclose = function (event) {
      clearTimeout(silence);
      if (event.code === 4401) {  // the session is over (logout, expiry): nothing stays on screen
        cards.innerHTML = "";
        location.href = "/login";
        return;
      }
      live.textContent = live.dataset.offline;
      live.className = "live off";
      setTimeout(reconnect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  // A refused reconnection shows the browser only a closed socket (1006): a daemon restarted
  // meanwhile (sessions live in its memory) or a session expired while the socket was down
  // would leave the old cards on screen, "reconnecting" forever. Ask first whether the
  // session still holds.
  function reconnect() {
    fetch("/api/me", { credentials: "same-origin", cache: "no-store" }).then(function (answer) {
      if (answer.status === 401) {
        cards.innerHTML = "";
        location.href = "/login";
        return;
      }
      connect();
    }, function () {
      connect();  // the daemon is not answering yet: the socket's own failure backs off
    });
  }
  connect();
})();
