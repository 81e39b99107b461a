"""Each chapter's settings per budget, one small module a chapter, so that a chapter opens with its
idea and loads its sizes in one short line: ``cfg = advlib.budget.chapter("targeted_attacks")``.

A module here defines ``SETTINGS``, one row a setting: ``name=(smoke, book, paper)``, with a
comment, so that the three budgets read side by side;
:func:`advlib.budget.chapter` picks the active budget's dict and
:func:`advlib.budget.chapter_table` shows all three. The chapters move here one by one, in their
passes; the others still hold their table in their setup cell (:func:`advlib.budget.pick`).
"""
