"""Each chapter's settings per budget, one small module a chapter, so that a chapter opens with its
idea and loads its sizes in one short line: ``cfg = advlib.budget.chapter("targeted_attacks")``.

A module here defines ``SMOKE``, ``BOOK`` and ``PAPER``, three dicts with the same keys (each budget
lists every setting, so they read side by side), with a comment for each setting;
:func:`advlib.budget.chapter` picks the active budget's dict and
:func:`advlib.budget.chapter_table` shows all three. The chapters move here one by one, in their
passes; the others still hold their table in their setup cell (:func:`advlib.budget.pick`).
"""
