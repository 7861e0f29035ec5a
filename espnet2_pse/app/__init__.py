"""``pse-app``: personalize, enhance, compare and listen live from a local web page
(see :mod:`espnet2_pse.app.server`). Needs the ``app`` extra (aiohttp)."""
