"""The signed-webhook CRM: the daemon POSTs JSON events about calls and records to the
admin's URL, signed with HMAC-SHA256, and may ask a lookup URL who a number belongs to.
docs/webhook.md is the receiver's side of the contract."""
