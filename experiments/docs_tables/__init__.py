"""The generated blocks of ``docs/`` (tables, texts, figures) from the committed data.

``render``: rows to Markdown and the replacement of the generated blocks of a page;
``common``: the run summaries of ``docs/runs/`` and the numbers every study shows;
``rho_n``, ``campaign``, ``performance``, ``legacy``: one study each; ``figures``: the
figures of ``docs/figures/``. ``experiments/tables.py`` names the blocks and runs them.
"""
