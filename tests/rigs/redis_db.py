"""The Redis of multi-process tests: the one on 127.0.0.1:6379 that the test set-up starts when
nothing answers (scripts/ensure-redis.sh). Multi-process tests use database 13 of it."""
REDIS_URL = "redis://127.0.0.1:6379/13"
