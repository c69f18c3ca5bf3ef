"""Token usage and money: recording model calls, hourly rollups, prices and cost reports."""
