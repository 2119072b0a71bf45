"""Video tasks of the MiniMax fake and their lifecycle.

A task moves Preparing -> Queueing -> Processing -> Success (or Fail under
the `video_fail` fault) as the lesser of two fractions grows: real seconds
since creation over `seconds`, and queries so far over `polls`. So a task
succeeds once both that many seconds have passed and it has been queried
that many times; with no seconds it ends on its `polls`-th query. A task and
its file belong to the key (fingerprint) that created the task.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["STATUSES", "VideoTask", "VideoTasks"]

STATUSES = ("Preparing", "Queueing", "Processing", "Success", "Fail")
# Frame sizes of MiniMax's resolutions.
_FRAME = {"512P": (912, 512), "768P": (1366, 768), "1080P": (1920, 1080)}


@dataclass(slots=True)
class VideoTask:
    """One video being "made": who owns it, what it needs to finish, how far it is."""

    task_id: str
    file_id: str
    owner: str
    resolution: str
    seconds: float
    polls: int
    fail: bool
    size: int
    created: float
    queried: int = 0
    succeeded: bool = False

    def query(self, now: float) -> str:
        """Count one query and say the status it sees."""
        self.queried += 1
        by_time = (now - self.created) / self.seconds if self.seconds > 0 else 1.0
        by_polls = self.queried / self.polls if self.polls > 0 else 1.0
        done = min(by_time, by_polls)
        if done >= 1:
            self.succeeded = not self.fail
            return "Success" if self.succeeded else "Fail"
        return STATUSES[min(int(done * 3), 2)]

    @property
    def frame(self) -> tuple[int, int]:
        return _FRAME.get(self.resolution, _FRAME["768P"])


class VideoTasks:
    """Every task of one fake world, by task id and by file id."""

    def __init__(self) -> None:
        self._tasks: dict[str, VideoTask] = {}
        self._files: dict[str, VideoTask] = {}
        self._lock = threading.Lock()

    def add(self, task: VideoTask) -> None:
        with self._lock:
            self._tasks[task.task_id] = task
            self._files[task.file_id] = task

    def owned(self, task_id: str, owner: str) -> VideoTask | None:
        """The task if it exists and belongs to `owner`, else None (the same for both)."""
        with self._lock:
            task = self._tasks.get(task_id)
        return task if task is not None and task.owner == owner else None

    def file(self, file_id: str, owner: str | None = None) -> VideoTask | None:
        """The succeeded task whose file this is (owned by `owner`, when given)."""
        with self._lock:
            task = self._files.get(file_id)
        if task is None or not task.succeeded or owner not in (None, task.owner):
            return None
        return task

    def clear(self) -> None:
        with self._lock:
            self._tasks.clear()
            self._files.clear()
