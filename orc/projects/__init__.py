"""Projects: the git repositories on the server's disk that tasks work on."""
