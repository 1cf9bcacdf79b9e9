"""What a newcomer runs first, kept outside the wheel: the demo and the example models.

``demo`` is ``make demo``; ``models`` trains the example scikit-learn models (bundled datasets,
nothing downloaded) that the demo, the tests and the benchmarks register in MLflow. Neither is
part of the installed ``mlgitops`` package: they run from a checkout.
"""
