"""The Ray executor: photos are stylized by Ray actors, on this machine or a cluster.

Actors rather than Ray Data: the runner already streams photos and writes each
result as it comes, an actor keeps its engine (the network, loaded once) across
thousands of photos and a watcher's days, and the fault-tolerance knobs we need
(``max_restarts``, ``max_task_retries``, ``ray.cancel``) are the actors' own.

What travels, and what stays on the driver:

* to a worker: each photo's bytes, its resolved preset, and the style targets
  by object reference (one ``ray.put`` per style and side, fetched once per
  worker).  A worker never opens a file of the job, nor a painting: targets are
  computed or read from the cache here, on the driver, for every side a photo
  may need, including those of the half-size retry after running out of memory;
* back: the encoded picture (or a category and a reason), and progress events
  through a small actor that the driver drains on its own thread.

The modules, each owning one part:

* :mod:`.connect`: the optional import, joining or starting Ray, the reachability
  probe, one-line errors;
* :mod:`.actor`: the worker actor around :func:`pipeline.render.workshop.render_batch`;
* :mod:`.progress`: the progress relay, both ends;
* :mod:`.targets`: style targets shipped by reference, both ends;
* :mod:`.pool`: how many workers, starting them, their states;
* :mod:`.executor`: :class:`RayExecutor`, the task loop and what a dead worker means.
"""

from __future__ import annotations

from pipeline.executors.ray.connect import probe, ray_available
from pipeline.executors.ray.executor import RayExecutor

__all__ = ["RayExecutor", "probe", "ray_available"]
