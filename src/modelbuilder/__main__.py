"""`python -m modelbuilder`: the same as the `modelbuilder` command."""

from modelbuilder.cli import main

main()
