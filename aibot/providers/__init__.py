"""Provider clients, one module per API, and the one call policy.

- `base.py`: image request/result types, the aiohttp session, HTTP -> typed errors
- `retry.py`: `with_keys` / `stream_with_keys`, how a call uses a pool's keys
- `openai_chat.py`: streamed chat (OpenAI, and MiniMax's compatible endpoint)
- `openai_images.py`, `stability.py`, `minimax.py`: images and video
- `picture.py`: a member's picture as providers take it (transforms, first frames)
"""
