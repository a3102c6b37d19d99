"""The web app: signup, confirm, manage, unsubscribe and archive pages, and a JSON API."""

from service.web.app import create_app
from service.web.deps import client_address

__all__ = ["client_address", "create_app"]
