"""``[core] hostname_callable`` of the components a test names (``harness.component_env``).

Airflow records the hostname of each task try and of each triggerer job; on one machine they would
all be the same. With this, the metadata DB says which worker ran a try and which triggerer holds a
trigger. Kept tiny: every task process imports it.
"""

from __future__ import annotations

import os
import socket


def component_name() -> str:
    """The component's name from ``BABOU_COMPONENT_NAME``, else the machine's name."""
    return os.environ.get("BABOU_COMPONENT_NAME") or socket.getfqdn()
