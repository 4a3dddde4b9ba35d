"""One module per LLaMA-Factory module bent, named after it: ``hparams_parser`` bends ``llamafactory.hparams.parser``
(``webui`` and ``v1`` bend several modules of those packages). Each opens with a table: name | change | why."""
