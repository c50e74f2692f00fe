"""Framework adapters: ``botdb.ext.aiogram``, ``botdb.ext.ptb`` and ``botdb.ext.discord``.

None of them is imported by ``import botdb``; each needs its framework (the pip extras
``botdb[aiogram]``, ``botdb[ptb]``, ``botdb[discord]``) and raises
:class:`~botdb.errors.MissingDependencyError` naming the extra when it is missing.
"""
