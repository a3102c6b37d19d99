"""Celery workers over the service functions."""
