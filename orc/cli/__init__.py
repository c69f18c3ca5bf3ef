"""The command line: the root group (`main`), one module per command group, shared helpers."""
