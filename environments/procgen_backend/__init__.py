"""procgen backend: the published goal-misgeneralization settings on the real procgen games.

Needs the ``misgen[procgen]`` extra. Nothing here imports procgen at module import time (the env
registry imports every module, also where procgen is absent); factories import it lazily.
"""
