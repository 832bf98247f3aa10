"""``pyflux-mnist serve``: a local page to draw a digit, upload a photo, look inside the network and train.

Starlette + uvicorn (the ``web`` extra); the page is plain HTML/CSS/JS in ``static/``. Import
:mod:`pyflux_mnist.web.app` only where the extra is installed.
"""
