# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch manifests: which job each photo of a batch became, so an interrupted batch can be
finished later without sending anything again. bpy-free.

    <data dir>/batches/<batch id>.json
        {"id", "created_at", "provider", "argv", "cwd", "finished",
         "items": [{"photo", "prompt", "job"}]}

An item's job id is written the moment its job is submitted (the job's own journal entry is
written before it is queued), so after an interruption every paid job is found again.
"""
from __future__ import annotations

import json
import os
import time

from .journal import write_atomically
from .model import new_job_id

FOLDER = "batches"


def item_key(photo: str, prompt: str | None) -> list:
    return [os.path.abspath(photo), prompt or None]


class BatchManifest:
    def __init__(self, path: str, data: dict):
        self.path = path
        self.data = data

    # -- finding --------------------------------------------------------------------------------
    @classmethod
    def create(cls, data_dir: str, provider: str, keys: list, argv: list | None = None):
        batch_id = new_job_id()
        path = os.path.join(data_dir, FOLDER, f"{batch_id}.json")
        manifest = cls(path, {"id": batch_id, "created_at": time.time(), "provider": provider,
                              "argv": list(argv or []), "cwd": os.getcwd(),
                              "finished": False,
                              "items": [{"photo": p, "prompt": q, "job": None}
                                        for p, q in keys]})
        manifest.save()
        return manifest

    @classmethod
    def all(cls, data_dir: str) -> list["BatchManifest"]:
        """Every readable manifest, newest first."""
        folder = os.path.join(data_dir, FOLDER)
        found = []
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    found.append(cls(path, json.load(fh)))
            except (OSError, ValueError):
                continue
        found.sort(key=lambda m: m.data.get("created_at", 0), reverse=True)
        return found

    @classmethod
    def latest_unfinished(cls, data_dir: str, provider: str | None = None,
                          keys: list | None = None) -> "BatchManifest | None":
        """The newest unfinished batch, of the same provider and photos when given."""
        for manifest in cls.all(data_dir):
            if manifest.finished:
                continue
            if provider is not None and manifest.data.get("provider") != provider:
                continue
            if keys is not None and manifest.keys != [list(k) for k in keys]:
                continue
            return manifest
        return None

    # -- reading and writing -------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def argv(self) -> list:
        return list(self.data.get("argv") or [])

    @property
    def cwd(self) -> str:
        return self.data.get("cwd") or os.getcwd()

    @property
    def finished(self) -> bool:
        return bool(self.data.get("finished"))

    @property
    def keys(self) -> list:
        return [[item["photo"], item.get("prompt")] for item in self.data["items"]]

    def job_id(self, index: int) -> str | None:
        return self.data["items"][index].get("job")

    def set_job(self, index: int, job_id: str | None) -> None:
        self.data["items"][index]["job"] = job_id
        self.save()

    def set_finished(self, finished: bool = True) -> None:
        self.data["finished"] = finished
        self.save()

    def save(self) -> None:
        """Written whole and synced (a resume must find every job id a crash left)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_atomically(self.path, json.dumps(self.data, indent=1))
