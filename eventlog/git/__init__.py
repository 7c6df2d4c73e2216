"""The shadow git repository of a run (`GitStore`), in four parts:

* ``repository.py``: opening, snapshots of a workdir, reading trees and diffs — the only module
  of agtrace that imports pygit2;
* ``policy.py``: what a snapshot records and leaves out, and the files that say so;
* ``checkout.py``: writing a tree into a directory, and switching a directory between trees
  (file contents read by ``loose.py`` when loose, so several threads inflate at once);
* ``bundle.py``: the git CLI, where libgit2 cannot go (bundles; importers' foreign repositories).

``result.py`` holds the plain values they return. Import these names from ``agtrace.eventlog``.
"""
