"""The HTTP API: one router per concept, and the dependencies every route shares (``deps``).

Routes stand on the domains below them and call their services; nothing below imports from here.
"""
