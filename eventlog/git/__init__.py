"""The shadow git repository of a run (`GitStore`), in five parts:

* ``repository.py``: opening, snapshots of a workdir, reading trees and diffs — the only module
  of agtrace that imports pygit2;
* ``policy.py``: what a snapshot records and leaves out, and the files that say so;
* ``checkout.py``: writing a tree into a directory, and switching a directory between trees
  (file contents read by ``loose.py`` and ``packed.py``, so several threads inflate at once;
  a whole tree is written by ``treewrite.py``);
* ``tree_reader.py``: the shadow repository read without pygit2 where Python can read it, for
  replays into new directories (`TreeReader`, which falls back to `GitStore` per object);
* ``bundle.py``: the git CLI, where libgit2 cannot go (bundles; importers' foreign repositories).

``result.py`` holds the plain values they return. Import these names from ``agtrace.eventlog``.
"""
