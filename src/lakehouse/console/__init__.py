"""The web console: one page and its plain ES modules, served from this package at `/`.

No build step and nothing fetched at run time: the files under `static/` are
the console as shipped (the wheel carries them as package data). The gateway,
embedded or split, answers `GET /` with the page and `GET /console/<asset>`
with its scripts and styles; the token check leaves both open, and every API
call the page makes carries the signed-in token itself.
"""

from lakehouse.console.assets import add_console_routes, console_response, is_console_path

__all__ = ["add_console_routes", "console_response", "is_console_path"]
