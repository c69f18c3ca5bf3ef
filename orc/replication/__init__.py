"""Litestream replication of orc.db: configuration, checks, restore on boot, recorded status."""
