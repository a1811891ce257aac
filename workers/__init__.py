"""Celery workers: thin tasks that call the domain modules with ids."""
