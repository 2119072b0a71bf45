"""Shared fixtures live in tests/fixtures/, one module per area."""

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.engine",
    "tests.fixtures.store",
    "tests.fixtures.discord",
    "tests.fixtures.attachments",
    "tests.fixtures.redis_server",
]
