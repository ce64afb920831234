// The call window: redraw the cards each time the daemon says this agent's calls changed.
(function () {
  "use strict";
  var cards = document.getElementById("cards");
  var live = document.getElementById("live");
  var delay = 500;
  var SILENCE_MS = Number(live.dataset.silenceMs) || 60000;  // the daemon writes at least every 25 s

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws");
    var silence = null;
    function heard() {  // silence past SILENCE_MS means a dead link
      clearTimeout(silence);
      silence = setTimeout(abandon, SILENCE_MS);
    }
    // On a dead link a close() waits for the daemon's answer, which never comes: this socket is
    // left to itself, and a new one is opened now.
    function abandon() {
      socket.onmessage = socket.onclose = null;
      socket.close();
      closed({ code: 1006 });
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
    socket.onclose = closed;
    function closed(event) {
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
    }
  }

  // A refused reconnection shows the browser only a closed socket (1006): a daemon restarted
  // meanwhile (sessions live in its memory) or a session expired while the socket was down
  // would leave the old cards on screen, "reconnecting" forever. Ask first whether the
  // session still holds.
  function reconnect() {
    // bounded: after a network blip the browser may send it on a keep-alive connection gone dead
    var asking = new AbortController();
    setTimeout(function () { asking.abort(); }, 5000);
    fetch("/api/me", { credentials: "same-origin", cache: "no-store", signal: asking.signal }).then(function (answer) {
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
