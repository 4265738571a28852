"""``python -m llmnet`` runs the command line."""

from llmnet.cli.main import main

main()
