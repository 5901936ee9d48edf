"""The command van's side: the actors that receive, verify, store and show the units' events.

The van's actors come here (receiver per unit, acknowledgements, the operator's console), each in
``actors/van/<name>.py`` with its messages beside it. ``event_store.py`` is the durable store they
write verified envelopes to; it is a plain module, run through the ``BlockingPool``.
"""
