"""Model loading and batched predictors, one instance per Python worker (see ``cache``).

Spark is optional here: the task's GPUs and cores are read from pyspark's ``TaskContext`` when it is
importable and a task is running, so models also load and run without Spark.
"""
