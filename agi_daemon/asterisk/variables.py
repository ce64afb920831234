"""Every channel-variable name and AGI route name that the dialplan and Python share.

`dialplan/agi-daemon.conf` uses exactly these names; tests/asterisk check that it does.
"""

# Routes: agi://host:port/<route>
ROUTE_INCOMING = "incoming"
ROUTE_OUTGOING = "outgoing"
ROUTE_CALL_END = "call-end"

# Set by the daemon on the routing answer.
STATUS = "AGI_DAEMON_STATUS"  # ok | fallback | excluded | error (core.decisions.RoutingStatus); empty when the daemon did not answer
RESPONSIBLE = "AGI_DAEMON_RESPONSIBLE"  # dial target of the responsible employee, or empty
RESPONSIBLE_RING = "AGI_DAEMON_RESPONSIBLE_RING"  # seconds to ring the responsible
QUEUE = "AGI_DAEMON_QUEUE"  # queue group dial targets joined with '&'
QUEUE_RING = "AGI_DAEMON_QUEUE_RING"  # seconds (per member with in_order, total with ring_all)
QUEUE_STRATEGY = "AGI_DAEMON_QUEUE_STRATEGY"  # in_order | ring_all
TRUNK = "AGI_DAEMON_TRUNK"  # outgoing: the dial target of the external number

# Set by the dialplan.
STARTED = "AGI_DAEMON_T0"  # epoch seconds with milliseconds when the call entered the context
URL = "AGI_DAEMON_URL"  # global: agi://127.0.0.1:4573 unless the admin sets it
URL_2 = "AGI_DAEMON_URL_2"  # global, optional: a second daemon, asked when the first does not answer

# AGI arguments, in order, that the dialplan passes to each route (agi_arg_1, agi_arg_2, ...).
# Passing them as arguments costs no round trip, unlike GET VARIABLE.
ROUTING_ARGS = ("linkedid",)  # incoming and outgoing: ${CHANNEL(linkedid)}
CALL_END_ARGS = (
    "linkedid",  # ${CHANNEL(linkedid)}
    "status",  # ${AGI_DAEMON_STATUS} (empty when the daemon did not answer the routing AGI)
    "direction",  # incoming | outgoing
    "exten",  # the EXTEN the context was entered with (line, or dialled external number)
    "callerid",  # ${CALLERID(num)} at entry (client number, or employee extension)
    "dialstatus",  # ${DIALSTATUS} of the last Dial
    "answered_ms",  # ${ANSWEREDTIME_MS} of the last Dial (empty if never answered)
    "peer",  # ${DIALEDPEERNUMBER}: the dial target that answered, e.g. 101 or 101@employees
    "t0",  # ${AGI_DAEMON_T0}: epoch seconds with milliseconds at entry
)

# Stasis variant (dialplan/agi-daemon-stasis.conf, over ARI).
APP = "AGI_DAEMON_APP"  # global: the Stasis application, asterisk.ari.app (default agi-daemon)
STASIS_ARGS = ("direction", "linkedid")  # Stasis(<app>,incoming|outgoing,${CHANNEL(linkedid)})
CALL_END_EVENT = "AgiDaemonCallEnd"  # the hangup handler's UserEvent; its fields: CALL_END_ARGS by name
