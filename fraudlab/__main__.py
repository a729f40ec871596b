"""Allow ``python -m fraudlab``."""

from fraudlab.cli import main

main()
