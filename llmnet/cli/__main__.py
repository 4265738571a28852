"""``python -m llmnet.cli`` runs the command line."""

from llmnet.cli.main import main

main()
