"""The web dashboard: environments x models x versions, read-only, on both runtimes.

- ``views``: what is shown, as plain data (pure; the JSON API returns it as is)
- ``detail``: a model's record from the registry, Git and the metric tables
- ``charts``: small inline-SVG line charts; ``pages``: the Jinja templates rendered
- ``app``: the aiohttp routes, the token check, the :class:`~controller.ui.app.Collector` port

The collectors live with their runtimes: ``local.dashboard`` (state directory) and
``kubernetes.dashboard`` (API objects).
"""
