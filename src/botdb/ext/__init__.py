"""Adapters for bot frameworks; each is an optional extra, never imported by ``import botdb``.

* :mod:`botdb.ext.ptb`: python-telegram-bot persistence (``pip install 'botdb[ptb]'``).
"""
