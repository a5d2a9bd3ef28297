"""Aegir entry point: `python run.py [+experiment=NAME] [key=value ...]` (see README)."""

import hydra
from omegaconf import DictConfig

from aegir import hydra_resolvers
from aegir.cli import exit_on_user_errors, main_with_exit_codes

hydra_resolvers.register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@exit_on_user_errors
def main(cfg: DictConfig) -> float:
    from aegir.main import run  # here, not at the top: it imports torch, which `--help` / `--cfg job` do not need

    return run(cfg)


if __name__ == "__main__":
    main_with_exit_codes(main)
