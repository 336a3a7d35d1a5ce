"""The studio: a local web server to audition and steer renders (``compose studio``), over :mod:`composer.api`."""
