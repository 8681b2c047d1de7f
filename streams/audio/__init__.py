"""The media path: sources -> (capture ring buffer) -> encoders -> broadcast hubs -> listener tracks."""
