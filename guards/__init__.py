"""Guards at the edges of lfr-edge: what every other package uses to take input it cannot trust.

The lowest layer of the project: it imports nothing of ours, and ``runtime``, ``models``,
``actors``, ``lfr`` and ``bench`` may all import it.

- ``user_input``   - ``UserInputError``, the one family the command line reports as bad input
- ``files``        - reading a file a user named: regular files only, bounded by bytes read
- ``log_text``     - untrusted names made safe to log or print (no forged lines, no escapes)
- ``config_checks``- the checks config dataclasses run in ``__post_init__``
- ``exit_codes``   - every process exit code (light to import: the command line installs its
  signal handlers before anything heavy is loaded)
- ``pipe_child``   - a child process of our own interpreter behind two anonymous pipes, every
  wait with a deadline (the second model's worker, the unit's signing process)
"""
