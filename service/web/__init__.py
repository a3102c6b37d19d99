"""The web app: signup, confirm, manage, unsubscribe and archive pages, and a JSON API."""

from service.web.app import client_address, create_app

__all__ = ["client_address", "create_app"]
