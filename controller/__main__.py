"""``python -m controller`` is ``mlgitops``: the local runtime starts servers this way."""

from controller.cli import main

main()
