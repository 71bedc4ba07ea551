"""The only package that knows Spark: UDFs, accessors, SQL registration, session."""
