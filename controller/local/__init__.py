"""The embedded runtime: the same engine on one machine, with no cluster.

``loop`` is ``mlgitops run`` (a pass every few seconds, holding the environment's lock);
``servers`` runs one ``mlgitops serve`` process per ModelDeployment on a stable port; ``cron``
runs the batch and monitoring jobs on their schedules, as the CronJobs would. Processes are
started the same way (``processes``), and everything is kept under the state directory, so a
restarted runtime adopts what it left running.
"""
