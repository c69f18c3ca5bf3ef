"""The job worker: a Huey consumer with orc's periodic and on-demand jobs."""
