# SPDX-License-Identifier: GPL-3.0-or-later
"""The job: what the artist asked for, where it is, and what came back. bpy-free."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from ..errors import scrub

STATES = ("queued", "submitting", "running", "downloading", "ready", "imported", "failed",
          "canceled")
#: states Job.wait() returns on
WAIT_TERMINAL = frozenset({"ready", "imported", "failed", "canceled"})
#: states with nothing more for a worker to do
FINISHED = frozenset({"ready", "imported", "failed", "canceled"})
ACTIVE = frozenset({"queued", "submitting", "running", "downloading"})

#: fields written to the journal, in this order; nothing secret is ever among them
JOURNAL_FIELDS = ("id", "provider", "state", "progress", "remote_id", "error", "error_code",
                  "files", "cost", "remaining_credits", "polls", "created_at", "updated_at",
                  "submitted_at", "finished_at", "inputs", "service_data", "submit_sent",
                  "auto_import", "label", "imported_objects", "notice")


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
_OPTIONAL_TEXT = (str, type(None))
#: what each journal field must hold; an entry with anything else is unreadable (guessing a
#: value for `submit_sent` or `remote_id` could pay twice)
FIELD_TYPES = {"id": str, "provider": str, "state": str, "progress": _NUMBER,
               "remote_id": _OPTIONAL_TEXT, "error": _OPTIONAL_TEXT, "error_code": _OPTIONAL_TEXT,
               "files": list, "polls": int, "created_at": _NUMBER, "updated_at": _NUMBER,
               "submitted_at": _OPTIONAL_NUMBER, "finished_at": _OPTIONAL_NUMBER,
               "inputs": dict, "service_data": dict, "submit_sent": bool, "auto_import": dict,
               "label": str, "imported_objects": list, "notice": _OPTIONAL_TEXT}

#: journal fields written by earlier versions under other names
LEGACY_FIELDS = {"origin": "auto_import", "provider_state": "service_data"}


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class Job:
    """One generation. Workers change it; everyone else reads it and may `wait()` on it."""

    def __init__(self, provider: str, inputs: dict, *, job_id: str | None = None,
                 auto_import: dict | None = None, label: str = ""):
        self.id = job_id or new_job_id()
        self.provider = provider
        self.state = "queued"
        self.progress = 0.0
        self.remote_id: str | None = None
        self.error: str | None = None
        self.error_code: str | None = None
        self.files: list[str] = []
        self.cost: Any = None
        self.remaining_credits: Any = None
        self.polls = 0
        self.created_at = time.time()
        self.updated_at = self.created_at
        self.submitted_at: float | None = None   # when the service accepted it
        self.finished_at: float | None = None
        self.inputs = inputs
        self.service_data: dict = {}
        self.submit_sent = False
        #: where and how to import the result by itself when it is ready (the .blend, scene,
        #: placement and size the artist chose when pressing Generate); empty: do not
        self.auto_import = auto_import or {}
        self.label = label
        self.imported_objects: list[str] = []
        #: what the artist should know about a job that made it (e.g. one of its variations
        #: failed): never an error
        self.notice: str | None = None
        #: who works on it when that is another process (an ownership.OwnerInfo), else None;
        #: such a job is listed here but neither submitted, polled nor downloaded
        self.owner = None
        self._changed = threading.Condition()
        self._released = False        # the engine stopped: wait() returns (release_waiters)
        self.cancel_event = threading.Event()

    # -- reading --------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<Recon3D Job {self.id} {self.provider} {self.state}>"

    @property
    def done(self) -> bool:
        return self.state in WAIT_TERMINAL

    def wait(self, timeout: float | None = None) -> "Job":
        """Block the calling thread until the job is ready, imported, failed or canceled (or
        `timeout` seconds pass). Needs no timers, so it works under `blender -b` and in the
        bpy module. Returns the job; check `state` and `error`.

        It also returns when the engine stops (the extension is disabled or reloaded): the job
        is then left as it is (`done` is False), journaled, and resumes on the next enable;
        get it again there with `api.get_job(job.id)`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self.state not in WAIT_TERMINAL and not self._released:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining if remaining is not None else 1.0)
        return self

    # -- writing (engine and importer) ----------------------------------------------------------
    def release_waiters(self) -> None:
        """The engine is stopping: wake every `wait()`, leaving the job as it is."""
        with self._changed:
            self._released = True
            self._changed.notify_all()

    def update(self, **changes) -> None:
        with self._changed:
            for key, value in changes.items():
                if key not in JOURNAL_FIELDS:
                    raise AttributeError(key)
                if key == "error" and value is not None:
                    value = scrub(value)          # never a key in a message or the journal
                setattr(self, key, value)
            self.updated_at = time.time()
            if self.state in FINISHED and self.finished_at is None:
                self.finished_at = self.updated_at
            self._changed.notify_all()

    def refresh_from(self, other: "Job") -> bool:
        """Take the journaled fields of `other` (this job as another process journaled it), if
        it is newer. Returns True when something was taken."""
        with self._changed:
            if other.updated_at <= self.updated_at:
                return False
            for name in JOURNAL_FIELDS:
                setattr(self, name, getattr(other, name))
            self._changed.notify_all()
        return True

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in JOURNAL_FIELDS}

    @classmethod
    def from_json(cls, data: dict) -> "Job":
        """The job of a journal entry; ValueError names the first field that is not right."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        data = {LEGACY_FIELDS.get(key, key): value for key, value in data.items()}
        for name, kinds in FIELD_TYPES.items():
            value = data.get(name)
            if (name in data or name in ("id", "provider")) and \
                    (not isinstance(value, kinds) or isinstance(value, bool) and kinds is not bool):
                raise ValueError(f"its field '{name}' holds {value!r:.40}")
        if data.get("state", "queued") not in STATES:
            raise ValueError(f"its state {data['state']!r:.40} is unknown")
        job = cls(data["provider"], data.get("inputs") or {}, job_id=data["id"])
        for name in JOURNAL_FIELDS:
            if name in data:
                setattr(job, name, data[name])
        return job
