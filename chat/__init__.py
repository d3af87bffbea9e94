"""The chat contract shared by conversations, scheduler and runtimes: what arrives (`Incoming`), what is
sent (`Reply`, `Outgoing`, buttons, the named send errors), the callback codec, Telegram's limits, the
languages and their catalogues. Nothing here imports a Telegram framework or a service."""
