"""`python -m dsollama` runs the CLI."""

from dsollama.cli import main

if __name__ == "__main__":
    main()
