"""Watched inboxes: every photo dropped into a job's inbox is stylized once, when complete.

* :mod:`~pipeline.watch.tracker`: observers, scans and settling, into a queue;
* :mod:`~pipeline.watch.worker`: one photo at a time, through the runner, then out of
  the inbox (``done/`` or ``failed/``);
* :mod:`~pipeline.watch.inbox`: what is remembered of handled files, and moving them;
* :mod:`~pipeline.watch.events`: the events, the live status and the options;
* :mod:`~pipeline.watch.watcher`: the locks and the threads, wired together.
"""

from pipeline.config.naming import classify_name
from pipeline.watch.events import Outcome, ProcessFn, WatchEvent, WatchOptions, WatchStatus
from pipeline.watch.watcher import InboxWatcher, watched_jobs

__all__ = ["InboxWatcher", "Outcome", "ProcessFn", "WatchEvent", "WatchOptions", "WatchStatus",
           "classify_name", "watched_jobs"]
