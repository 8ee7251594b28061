"""moto_server, with two repairs for many concurrent requests; everything else is moto as
installed (see requirements.txt).

1. DynamoDB answers one request at a time, and write transactions snapshot only the items they
   touch. moto deep-copies every table a transaction names, to roll back on failure: the cost
   grows with the table (~30 us an item: 0.1 s a transaction at 3000 items), and a write landing
   during the copy breaks it (an HTTP 500) or is undone by the rollback. Here the snapshot is a
   shallow copy of the table's item index with deep copies of just the items the transaction
   touches: the same rollback, in O(touched items).
2. A subnet hands out private IPs one request at a time. moto's IP generator is not thread-safe:
   two launches at once (a fleet request, an Auto Scaling group refilling) fail one of them
   half-way with a 500, its instances launched — and its retry launches them again, as EC2 never
   would for a request with a client token.
"""

import copy
import os
import signal
import sys
import threading
from collections import defaultdict

import moto.dynamodb.models as models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.ec2.models.subnets import Subnet
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

_touched = threading.local()


def _keys(table, op):
    """The (hash, range) keys an operation of a transaction names, as the table indexes them."""
    source = op.get("Key") or op.get("Item") or {}
    hash_value = source.get(table.hash_key_attr)
    if hash_value is None:
        return None
    range_value = source.get(table.range_key_attr) if table.range_key_attr else None
    return (DynamoType(hash_value), DynamoType(range_value) if range_value is not None else None)


def _snapshot(table):
    clone = copy.copy(table)
    if table.range_key_attr:
        clone.items = defaultdict(dict, {h: dict(r) for h, r in table.items.items()})
    else:
        clone.items = defaultdict(dict, table.items)
    for key in getattr(_touched, "keys", {}).get(table.name, []):
        hash_value, range_value = key
        if table.range_key_attr:
            item = clone.items.get(hash_value, {}).get(range_value)
            if item is not None:
                clone.items[hash_value][range_value] = copy.deepcopy(item)
        elif hash_value in clone.items:
            clone.items[hash_value] = copy.deepcopy(clone.items[hash_value])
    return clone


class _Copy:
    """`copy` as moto's DynamoDB backend sees it: tables are snapshot, the rest deep-copied."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return _snapshot(value)
        return copy.deepcopy(value, memo)


_transact = models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    touched = defaultdict(list)
    for item in transact_items:
        for op in item.values():
            table = self.tables.get(op.get("TableName"))
            key = _keys(table, op) if table is not None else None
            if key is not None:
                touched[table.name].append(key)
    _touched.keys = touched
    try:
        return _transact(self, transact_items)
    finally:
        _touched.keys = {}


models.copy = _Copy
models.DynamoDBBackend.transact_write_items = transact_write_items



def _one_at_a_time(cls, names, lock):
    for name in names:
        method = getattr(cls, name)

        def locked(*args, _method=method, **kwargs):
            with lock:
                return _method(*args, **kwargs)

        setattr(cls, name, locked)


_dynamodb = [n for n, v in vars(models.DynamoDBBackend).items() if callable(v) and not n.startswith("_")]
_one_at_a_time(models.DynamoDBBackend, _dynamodb, threading.RLock())
_one_at_a_time(Subnet, ["get_available_subnet_ip", "request_ip", "del_subnet_ip"], threading.Lock())



def serve():
    """moto's server as `moto_server` runs it, on a port the system picks: the line it prints
    says which, so two emulators started at once never share a port."""
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)
    print(f"moto listening on http://127.0.0.1:{server.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    serve()
