"""Assembly: settings, CLI, runtimes (aiogram, python-telegram-bot), local Bot API server, senders."""
