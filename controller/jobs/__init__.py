"""Entry points that run inside a Kubernetes Job (or as a local process): batch inference.

They are the commands the operator's CronJobs start (``mlgitops batch``), so each must be safe
to run again: Kubernetes retries a failed Job pod, and people rerun jobs by hand.
"""
