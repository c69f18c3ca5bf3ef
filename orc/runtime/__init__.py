"""The processes of a running orc: the `orc serve` launcher, the API process, supervisord glue."""
