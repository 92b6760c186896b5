"""The operations console (SPEC §16): the staff's web pages, served by the daemon under ``/console/``.

``app`` holds the application, the login and the guard; ``pages`` what staff read; ``actions`` what
operators record; ``security`` the cookies, CSRF, roles, login throttling and headers; ``i18n`` the
English and Korean labels.
"""

from notifier.runtime.console.app import ConsoleDeps, build_console_app, mount_console

__all__ = ["ConsoleDeps", "build_console_app", "mount_console"]
