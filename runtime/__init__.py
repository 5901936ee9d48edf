"""lfr-edge's actor runtime: a small, general asyncio actor library that knows nothing of faces.

Layering, bottom up (a module imports only from layers below it):

1. ``errors``, ``envelope``, ``mailbox``, ``log_budget`` - exceptions; bounded mailboxes with
   statistics; log lines per source bounded per time window
2. ``actor``, ``ref``, ``actor_metrics``        - the Actor API, typed refs, per-actor counters
3. ``cell``, ``supervisor``                     - running incarnations; restart strategies
4. ``blocking``, ``daemon_thread``, ``ordered_window``, ``timer``, ``stall_watchdog``,
   ``metrics_export`` - worker pool, a thread for calls a stop must not wait for, in-order
   concurrent jobs inside one actor, an actor's own periodic message, debug stalls, Prometheus
5. ``system``, ``node``                         - one node's actors; ``run(main)`` with signals
6. ``schema``, ``message``, ``codec``           - message registry and strict msgpack codec
7. ``framing``, ``link_messages``, ``link_keys``, ``link_config``, ``link_handshake``, ``link``,
   ``link_addresses``, ``link_endpoints``, ``datachannel`` - actor systems linked over byte
   streams (Unix socket, loopback TCP) or one WebRTC data channel: keys from a 0600 key file,
   limits and exposed actors per node, an HMAC challenge-response handshake before any message
   is accepted
"""

from guards.exit_codes import ExitCode
from runtime.actor import Actor, ActorContext
from runtime.blocking import BlockingPool, WorkersBusy
from runtime.codec import Codec, DecodeError, EncodeError
from runtime.errors import (
    ActorStopped,
    AskTimeout,
    LinkLost,
    MailboxFull,
    MessageDropped,
    RemoteError,
    RuntimeFault,
    SupervisorGaveUp,
)
from runtime.link import Link, RemoteActorRef, TooManyAsks
from runtime.link_config import LinkConfig
from runtime.link_endpoints import (
    LinkClient,
    LinkServer,
    connect_tcp,
    connect_unix,
    serve_tcp,
    serve_unix,
)
from runtime.link_handshake import HandshakeRefused
from runtime.link_keys import KeyFileError, LinkKeys, write_shared_key_file
from runtime.link_messages import LinkDown, LinkEvent, LinkUp
from runtime.mailbox import MailboxConfig, MailboxPolicy, MailboxStatistics
from runtime.message import MessageRegistry, default_registry, message
from runtime.node import run, run_node
from runtime.ordered_window import OrderedWindow, ResultsReady, tell_owner
from runtime.ref import ActorRef
from runtime.supervisor import Backoff, Strategy, Supervisor, SupervisorConfig
from runtime.system import ActorSystem, SystemConfig

__all__ = [
    "Actor",
    "ActorContext",
    "ActorRef",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "Backoff",
    "BlockingPool",
    "Codec",
    "DecodeError",
    "EncodeError",
    "ExitCode",
    "HandshakeRefused",
    "KeyFileError",
    "Link",
    "LinkClient",
    "LinkConfig",
    "LinkDown",
    "LinkEvent",
    "LinkKeys",
    "LinkLost",
    "LinkServer",
    "LinkUp",
    "MailboxConfig",
    "MailboxFull",
    "MailboxPolicy",
    "MailboxStatistics",
    "MessageDropped",
    "MessageRegistry",
    "OrderedWindow",
    "RemoteActorRef",
    "RemoteError",
    "ResultsReady",
    "RuntimeFault",
    "Strategy",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorGaveUp",
    "SystemConfig",
    "TooManyAsks",
    "WorkersBusy",
    "connect_tcp",
    "connect_unix",
    "default_registry",
    "message",
    "run",
    "run_node",
    "serve_tcp",
    "serve_unix",
    "tell_owner",
    "write_shared_key_file",
]
