"""`python -m sockscope` runs the CLI, with the console script's exit codes and one-line
errors (a closed pipe is exit 141, not a traceback)."""

from sockscope.cli import entry

if __name__ == "__main__":
    entry()
