"""Adapters for bot frameworks: ``botdb.ext.aiogram`` (and the other frameworks' modules).

Each adapter is an optional extra (``pip install 'botdb[aiogram]'``) and is imported only
when the bot imports it: this package imports no framework.
"""
