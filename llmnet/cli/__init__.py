"""The ``llmnet`` command line: ``main`` holds the core commands, one module per command group."""
