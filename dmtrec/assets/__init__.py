"""Game-asset tools on top of the renderer: view distributions and PBR references (:mod:`.views`),
unlit bakes (:mod:`.unlit_bake`) and levels of detail (``lod``)."""
