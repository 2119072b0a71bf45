"""aibot: one Discord bot, four isolated AI worker pools."""
