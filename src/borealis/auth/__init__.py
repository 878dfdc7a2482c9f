"""Users, passwords, API keys and who is calling."""
