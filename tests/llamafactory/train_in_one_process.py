"""``llamafactory-cli train <yaml>`` for several YAML files in one process: ``python train_in_one_process.py a.yaml
b.yaml ...``.

The CLI's launcher, on one device, hands ``train`` to ``llamafactory.train.tuner.run_exp``, which reads the YAML
named in ``sys.argv``; this does the same for each file in turn, so LLaMA-Factory, transformers and torch are
imported once. A run that raises leaves its traceback in ``<output_dir>/error.txt`` and the next one still runs.
"""

import sys
import traceback
from pathlib import Path

import yaml


def main(paths: list[str]) -> None:
    from llamafactory.train.tuner import run_exp

    for path in paths:
        sys.argv = ["llamafactory-cli", path]  # what the launcher leaves after popping the command
        try:
            run_exp()
        except Exception:
            output_dir = Path(yaml.safe_load(Path(path).read_text())["output_dir"])
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / "error.txt").write_text(traceback.format_exc())


if __name__ == "__main__":
    main(sys.argv[1:])
