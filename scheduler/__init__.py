"""Care messages, reminders and surveys: schedules become outbox rows (planner), the outbox drains at
Telegram's limits (dispatcher), and `SchedulerService` runs both inside the bot process."""
