"""gunicorn's entry point: `gunicorn -c service/gunicorn_conf.py service.wsgi:app`.

Importing this module builds the app and loads the models, so gunicorn must import it in
each worker (no preload_app): a model loaded before fork deadlocks the workers.
"""

from service.app import create_app

app = create_app()
