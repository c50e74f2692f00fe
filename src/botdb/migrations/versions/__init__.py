"""Revision files of botdb's built-in schema (branch ``botdb``)."""
