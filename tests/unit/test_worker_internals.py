"""The worker refuses to start on a gunicorn or gevent whose internals it relies on have changed."""

from __future__ import annotations

import re

import gevent
import gunicorn
import pytest
from gevent.baseserver import BaseServer
from gunicorn.http import wsgi
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from service import worker
from service.worker import IncompatibleInternals, OneWriteResponse, check_internals

STOCK_RESPONSE = OneWriteResponse.__base__
INSTALLED = f"the installed gunicorn {gunicorn.__version__} and gevent {gevent.__version__}"


def failure(problem: str) -> str:
    """The whole message check_internals raises for one problem, as a pattern."""
    return re.escape(f"service.worker.FairGeventWorker cannot run on {INSTALLED} (written for gunicorn 27.0.1 "
                     f"and gevent 26.9.0): {problem}. Install the versions it was written for, or review "
                     "service/worker.py against these.")


def test_the_installed_gunicorn_and_gevent_pass():
    check_internals()


def test_a_missing_method_is_named(monkeypatch):
    monkeypatch.delattr(STOCK_RESPONSE, "_emit_body")
    with pytest.raises(IncompatibleInternals, match=failure("gunicorn.http.wsgi.Response._emit_body is missing")):
        check_internals()


def test_a_missing_module_attribute_is_named(monkeypatch):
    monkeypatch.delattr(wsgi, "Response")
    with pytest.raises(IncompatibleInternals, match=failure("gunicorn.http.wsgi.Response is missing")):
        check_internals()


def test_a_replaced_module_attribute_is_named(monkeypatch):
    class Other(STOCK_RESPONSE):
        pass

    monkeypatch.setattr(wsgi, "Response", Other)
    expected = (f"gunicorn.http.wsgi.Response is {__name__}.{Other.__qualname__}, not the class OneWriteResponse "
                "extends (gunicorn.http.wsgi.Response)")
    with pytest.raises(IncompatibleInternals, match=failure(expected)):
        check_internals()


def test_a_changed_signature_is_named(monkeypatch):
    def handle_request(self, listener_name, req, sock, addr, stream):
        pass

    monkeypatch.setattr(GeventWorker, "handle_request", handle_request)
    expected = ("gunicorn.workers.ggevent.GeventWorker.handle_request takes "
                "(self, listener_name, req, sock, addr, stream), not (self, listener_name, req, sock, addr)")
    with pytest.raises(IncompatibleInternals, match=failure(expected)):
        check_internals()


def test_create_no_longer_reading_the_module_response_is_named(monkeypatch):
    def create(req, sock, client, server, cfg, response_class=None, response_args=()):
        return response_class(req, sock, cfg, *response_args), {}

    monkeypatch.setattr(wsgi, "create", create)
    with pytest.raises(IncompatibleInternals, match=failure("gunicorn.http.wsgi.create no longer refers to Response")):
        check_internals()


def test_a_loop_that_no_longer_asks_timeout_ctx_is_named(monkeypatch):
    def handle(self, listener, client, addr):
        self.handle_request(listener, next(client), client, addr)

    monkeypatch.setattr(AsyncWorker, "handle", handle)
    expected = "gunicorn.workers.base_async.AsyncWorker.handle no longer refers to timeout_ctx, StopIteration"
    with pytest.raises(IncompatibleInternals, match=failure(expected)):
        check_internals()


def test_a_changed_gevent_run_is_named(monkeypatch):
    def run(self):
        pass

    monkeypatch.setattr(GeventWorker, "run", run)
    sha = worker._source_sha256(run)
    expected = (f"gunicorn.workers.ggevent.GeventWorker.run is not the one FairGeventWorker.run replaces "
                f"(source sha256 {sha}, written for {worker.GEVENT_RUN_SHA256})")
    with pytest.raises(IncompatibleInternals, match=failure(expected)):
        check_internals()


def test_gevent_taking_full_from_a_spawn_function_is_named(monkeypatch):
    stock = BaseServer.set_spawn

    def set_spawn(self, spawn):
        stock(self, spawn)
        self.full = lambda: False

    monkeypatch.setattr(BaseServer, "set_spawn", set_spawn)
    expected = ("gevent.baseserver.BaseServer.set_spawn with a function no longer leaves full() to the server, "
                "so BalancedServer.full would never be asked")
    with pytest.raises(IncompatibleInternals, match=failure(expected)):
        check_internals()


def test_a_gevent_accept_loop_without_full_is_named(monkeypatch):
    def _do_read(self):
        for _ in range(self.max_accept):
            self.do_read()

    monkeypatch.setattr(BaseServer, "_do_read", _do_read)
    expected = "gevent.baseserver.BaseServer._do_read no longer refers to full, stop_accepting"
    with pytest.raises(IncompatibleInternals, match=failure(expected)):
        check_internals()


def test_every_problem_is_named_at_once(monkeypatch):
    monkeypatch.delattr(STOCK_RESPONSE, "_emit_body")
    monkeypatch.delattr(BaseServer, "start_accepting")
    with pytest.raises(IncompatibleInternals) as raised:
        check_internals()
    assert "gunicorn.http.wsgi.Response._emit_body is missing; " \
           "gevent.baseserver.BaseServer.start_accepting is missing" in str(raised.value)
