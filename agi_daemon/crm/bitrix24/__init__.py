"""Bitrix24: a REST client (inbound webhook or local-application OAuth, a client-side leaky
bucket, `batch` coalescing, errors translated to the CRM port's) and the operations the daemon
needs on a portal (find a client, register and finish a call, create records, change the
responsible, show and hide the call card, read the CRM mode)."""
