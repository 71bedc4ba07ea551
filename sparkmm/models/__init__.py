"""Model loading and batched predictors, one instance per Python worker (see ``cache``).

No Spark import: the Spark layer passes the task's resources through ``TaskContext``.
"""
