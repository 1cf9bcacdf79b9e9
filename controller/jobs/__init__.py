"""Entry points that run inside a Kubernetes Job (or as a local process): batch inference and the
drift monitor.

They are the commands the operator's CronJobs start (``mlgitops batch``, ``mlgitops monitor``), so
each must be safe to run again: Kubernetes retries a failed Job pod, and people rerun jobs by
hand. Both key what they write by a window (the batch id) and replace an earlier attempt at it.
"""
