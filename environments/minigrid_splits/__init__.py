"""MiniGrid splits: misgen train / test-iid / test-shift splits built on the ``minigrid`` package.

Each env is a ``MiniGridEnv`` subclass that overrides ``_gen_grid`` (MiniGrid's own dynamics,
objects and rendering), wrapped by :class:`~misgen.environments.minigrid_splits.base.MiniGridCore`
into misgen's functional-core contract, so the batched env is the native
:class:`~misgen.environments.native.NativeVectorEnv` and the planner can branch it.

* ``minigrid-color-location`` (color_location.py): the red ball always in one corner in training.
* ``minigrid-doorkey-shift`` (doorkey.py): the key always by the door in training.
* ``minigrid-lava-shortcut`` (lava_shortcut.py): DistShift-style lava river with a moved bridge.

Modules here register themselves when the env registry imports them.
"""
