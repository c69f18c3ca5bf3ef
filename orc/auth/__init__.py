"""Authentication: which configurations are safe, and the bearer-token check."""
