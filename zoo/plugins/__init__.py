"""zoo's built-in model families, one module each.

Each module is a plugin registered through the ``zoo`` entry-point group in ``setup.cfg``,
exactly as a third-party package would register its own.
"""
