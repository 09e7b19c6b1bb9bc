"""Where a suite's runs execute: ``--executor local|ray``.

- ``local`` (the default): ``bench.scheduler``, one worker process per GPU or CPU slot
  of this machine.
- ``ray``: ``bench.executors.ray_executor``, each run a Ray task on a Ray cluster (one started
  for the suite, or ``--address`` of a running one), for more than one machine.

Both take their runs from one ``bench.run_queue.RunQueue`` (stored runs skipped, dependents after
their parents, longest first), call the same ``bench.train.train`` through
``bench.worker.run_one``, write to the same kind of store (``bench.store.open_store``: a SQLite
file, or PostgreSQL when several machines write), and are driven by one command,
``bench.executors.command`` (``python -m bench suite``), which picks the executor and ends every
suite alike: the summary line, the report, the exit code.
"""
