"""The local production stack: PostgreSQL, an S3 store (moto_server) and an MLflow server on both.

`lifecycle stack up|down|status|env` (commands.py) runs it under a state folder (`.stack/` by
default). settings.py holds the pure parts (ports, credentials, URLs, the env file);
postgres.py and services.py start and stop the processes; stack.py puts them together.
docs/stack.md says what runs where.
"""
