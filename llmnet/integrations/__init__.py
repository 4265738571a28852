"""Adapters to other stacks, each behind an optional extra.

* ``openai_server`` (extra ``serve``): a network behind an OpenAI-compatible API (``llmnet serve``).
* ``langgraph`` (extra ``langgraph``): llmnet routers as conditional-edge functions, networks as nodes.
* ``dspy`` (extra ``dspy``): a DSPy module that runs a network; a DSPy LM pointing at ``llmnet serve``.

Modules are imported on use, so ``import llmnet`` never needs these extras.
"""
