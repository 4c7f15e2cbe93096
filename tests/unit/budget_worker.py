"""A process on a shared key budget, for ``test_shared_budget.py`` (``python -m tests.unit.budget_worker``).

It joins the budget of ``KEY`` at rate 20 in ``$BABOU_BUDGET_DIR``, prints ``ready``, then obeys
one line from stdin:

- ``take <end>``: take every token it can until monotonic ``<end>``; print how many it got.
- ``throttle <seconds>``: report a 429 with that ``Retry-After``; print ``done``.
"""

from __future__ import annotations

import sys
import time

from airflow_provider_babou import budget as _budget

BASE_URL = "http://127.0.0.1:9/api/v1"
KEY = "sk-bab-SharedBudgetWorker0123456789abcd"
RATE = 20.0


def main() -> None:
    budget = _budget.budget_for(_budget.budget_key(BASE_URL, KEY), RATE)
    print("ready" if budget.shared else "not-shared", flush=True)
    command, value = sys.stdin.readline().split()
    if command == "take":
        end, taken = float(value), 0
        while (now := time.monotonic()) < end:
            delay = budget.take(now)
            if delay == 0:
                taken += 1
            else:
                time.sleep(min(delay, end - now))
        print(taken, flush=True)
    elif command == "throttle":
        budget.throttled(float(value))
        print("done", flush=True)


if __name__ == "__main__":
    main()
