"""Tooling around the code location, never imported by it (a test keeps it so).

The ``movielens`` command, the runner, the bench, the data generator, the loopback S3 server and
the bundled sample.
"""
