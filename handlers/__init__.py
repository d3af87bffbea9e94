"""Member and counter conversations, framework-free: an `Incoming` in, `Reply`s out (see handlers.router)."""
