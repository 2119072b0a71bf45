"""`python -m aibot.sandbox.fake_discord`: a fake Discord in its own process."""

from .process import main

if __name__ == "__main__":
    main()
