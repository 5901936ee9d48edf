"""The camera unit's pipeline: camera -> detector -> matcher -> (uplink).

Only ``MatchAlert`` ever leaves the process; frames and faces are in-process messages that are
deliberately not registered with the codec, so they cannot be encoded for any boundary.
"""
