"""Hooks: consistency protection (quiesce/resume of databases) and custom hooks, as Jobs.

- ``ys1000.hooks.quiesce`` — the process inside the quiesce Job (``python -m``): holds a
  database lock / backup mode in one session until signalled or its hard maximum elapses;
- ``ys1000.hooks.consistency`` — ``ConsistencyRunner``: starts the quiesce Job, waits for the
  lock, resumes (by handle, or every quiesce Job of a run by label), ``cancel_all``;
- ``ys1000.hooks.custom`` — ``HookRunner``: a plan's PreBackup/PostBackup/PreRestore/PostRestore
  hooks (Ansible playbook or image) as Jobs, output returned, failure policy, ``cancel_all``.

No Airflow imports here; the operators live in ``ys1000.airflow.hook_operators``.
"""

from ys1000.hooks.consistency import ConsistencyError, ConsistencyRunner, QuiesceHandle
from ys1000.hooks.custom import HookError, HookFailed, HookResult, HookRunner

__all__ = [
    "ConsistencyError",
    "ConsistencyRunner",
    "QuiesceHandle",
    "HookError",
    "HookFailed",
    "HookResult",
    "HookRunner",
]
