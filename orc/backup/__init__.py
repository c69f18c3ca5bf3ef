"""Backups: take, list, verify, restore and prune copies of orc's database."""
