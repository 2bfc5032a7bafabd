"""Test infrastructure: real registries, a token server, a fault proxy and image builders.

Imported by ``tests/conftest.py`` as ``support`` (pytest puts ``tests/`` on ``sys.path``).
"""
