"""Pure decisions of the model pipeline: what to train, and (later) what to validate, propose and
promote. Like ``controller.planning``, nothing here does I/O: the engines observe Git and MLflow,
hand the observations in, and apply the decision once.
"""
