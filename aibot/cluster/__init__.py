"""Cluster mode (`AIBOT_REDIS_URL` set): what several aibot processes share, on Redis.

The only package that imports redis. Nothing here is imported when
`AIBOT_REDIS_URL` is unset: the embedded default (one process, SQLite) never
loads it.
"""
