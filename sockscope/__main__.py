"""`python -m sockscope` runs the CLI."""

from sockscope.cli import main

if __name__ == "__main__":
    main()
