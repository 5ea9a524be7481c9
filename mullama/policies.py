"""The documented import path for custom scheduling policies (``docs/scheduling.md``).

The policies live in ``mullama.serving.policies``; this thin re-export keeps
``from mullama.policies import BasePolicy, Request`` and ``scheduler = "mullama.policies:..."`` working.
"""

from mullama.serving.policies import (  # noqa: F401
    MAX_PREEMPTIONS,
    POLICIES,
    BasePolicy,
    FifoPolicy,
    Policy,
    PreemptivePolicy,
    PriorityPolicy,
    Request,
    RoundRobinPolicy,
    make_policy,
    urgency,
)
