"""The steps of a run, one module each; `aegir.main.run` calls them in order.

* :mod:`aegir.run.compose` -- composing conf/config.yaml with overrides, and the overrides Hydra was given;
* :mod:`aegir.run.directory` -- naming the run directory, its metadata.json (provenance) and its status;
* :mod:`aegir.run.trainer` -- the Lightning Trainer a config describes (callbacks, loggers, checkpoints);
* :mod:`aegir.run.single` -- one stage: build, fit, finalize;
* :mod:`aegir.run.stages` -- a `stages:` chain, each stage re-composed from overrides;
* :mod:`aegir.run.summary` -- scoring the best checkpoint, gates, summary.json, and the closing report.
"""
