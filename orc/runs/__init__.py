"""Task runs: the agent in a task's own git worktree, phase by phase."""
