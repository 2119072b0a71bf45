"""Shared fixtures live in tests/fixtures/, one module per area."""

import signal

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.engine",
    "tests.fixtures.store",
    "tests.fixtures.discord",
    "tests.fixtures.attachments",
    "tests.fixtures.redis_server",
]

# A shell starts a background job (`pytest &` in a script) with Ctrl-C ignored, and
# every process it starts would inherit that: the tests that press Ctrl-C in a bot
# they started need it to arrive. A handler of our own is reset to the default in
# each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
