"""WSGI entry point for gunicorn: ``gunicorn wsgi:app``.

The settings file comes from ``$DICOMWEB_CONFIG`` (see app.settings.load_settings).
"""

from app import create_app

app = create_app()
