"""Column type annotation (CTA) and column property annotation (CPA) data: web tables -> byte-level examples.

One concept per module:

* :mod:`.table` -- the in-memory corpus (``Table``, ``ColumnLabel``, ``PairLabel``, ``TableCorpus``);
* :mod:`.labels` -- the generator's label map (``sotab_labels.json``: entity -> columns -> CTA label / CPA property);
* :mod:`.synthetic` -- synthetic SOTAB-like web tables from ``data_seed``;
* :mod:`.sotab` -- the real SOTAB v2 files, validated with pandera;
* :mod:`.similarity` -- offline column vectors (hashed byte n-grams) and cosine;
* :mod:`.mmr` -- MMR choice of context columns;
* :mod:`.serialize` -- ``[CLS] target: v1 | v2 [SEP] context: ... [SEP]`` under byte budgets;
* :mod:`.dataset` -- ``build_column_dataset``: splits by table, label vocabulary, provenance;
* :mod:`.data_config` -- ``TablesDataConfig``, the typed ``task.data`` (light: the config check imports it).

Import from the modules themselves: this package imports nothing, so reading the config schema does not load torch
or pandas.
"""
