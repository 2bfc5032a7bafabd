"""Contract tests of the ``towline`` command line, run in subprocesses."""
