"""``corrkit explore``: a local web page to edit a code along a model's directions (extra ``explore``).

:mod:`~corrkit.viz.explore.model` does the model work (no web code, testable alone);
:mod:`~corrkit.viz.explore.web` is the Starlette app and the uvicorn server; ``static/``
holds the page, which loads nothing from the network.
"""
