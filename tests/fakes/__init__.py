"""The one home of the tests' hand-written stand-ins (no mocks):

  rules     make_rules(): the example PBX as core values; two_line_rules(): the dialplan's PBX
  crm       MemoryCrm (the lookup and the outbox in memory), DirectCommands (the outbox on the
            real store), SlowCrm / FlakyCrm / UntouchableCrm
  fastagi   FakeAsterisk: Asterisk's side of a FastAGI session; agi_call(): one whole session
  polling   eventually() / until(): wait for a positive signal, never a fixed sleep
  clock     FixedClock
"""
