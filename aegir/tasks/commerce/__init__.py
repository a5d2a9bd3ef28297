"""The commerce world of the V4.2 experiment: GRPO on four Brazilian e-commerce tasks with prompts in Portuguese.

* :mod:`aegir.tasks.commerce.world` -- a deterministic synthetic SQLite store (customers, sellers, products,
  orders, items, payments, reviews) generated from ``data_seed``.
* :mod:`aegir.tasks.commerce.pairs` -- prompt/reference records for the four tasks (``extraction``, ``sql_qa``,
  ``insights``, ``push``), the train/eval split and the fixed stratified eval set.
* :mod:`aegir.tasks.commerce.user_data` -- the user's own chat-style JSONL records and SQLite database instead.
"""
