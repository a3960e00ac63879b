"""The exported entry points (needs the bindings componentize-py generates)."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import operator as wit_op

# Imported here, while componentize-py snapshots the app at build time: a bindings module
# first imported inside a call is not found at run time.
from wit_world.imports import clock as _host_clock
from wit_world.imports import log as _host_log
from wit_world.imports import state_version as _host_state_version

from . import codec

_slot = {}


def _err(e):
    if isinstance(e, Err):
        return e
    if isinstance(e, codec.BadInput):
        return Err(wit_op.OperatorError_BadInput(str(e)))
    return Err(wit_op.OperatorError_Failed(f"{type(e).__name__}: {e}"))


def make(op):
    import weir

    weir.clock = _host_clock
    weir.log._host = _host_log

    class Component(exports.Operator):
        def open(self, op_id, info, args):
            if op_id != 0:
                raise Err(wit_op.OperatorError_UnknownOperator(op_id))
            try:
                inst = op() if isinstance(op, type) else op
                weir.args = dict(args)
                weir.task = info
                _host_state_version.declare(getattr(inst, "state_version", 0))
                weir.restored_state_version = _host_state_version.restored()
                ctx = weir.Context(info.subtask, info.parallelism, info.max_parallelism, weir.args, weir.restored_state_version)
                inst.open(ctx)
                _slot[0] = inst
            except Exception as e:  # noqa: BLE001
                raise _err(e) from None

        def process(self, op_id, batch):
            inst = _slot.get(op_id)
            if inst is None:
                raise Err(wit_op.OperatorError_UnknownOperator(op_id))
            try:
                return inst.process_batch(batch)
            except Exception as e:  # noqa: BLE001
                raise _err(e) from None

        def close(self, op_id):
            inst = _slot.pop(op_id, None)
            if inst is None:
                raise Err(wit_op.OperatorError_UnknownOperator(op_id))
            try:
                inst.close()
            except Exception as e:  # noqa: BLE001
                raise _err(e) from None

    return Component


def make_timers(op):
    from wit_world import exports as ex

    class Timers(ex.Timers):
        def on_timer(self, op_id, batch):
            inst = _slot.get(op_id)
            if inst is None:
                raise Err(wit_op.OperatorError_UnknownOperator(op_id))
            try:
                return inst.on_timer_batch(batch)
            except Exception as e:  # noqa: BLE001
                raise _err(e) from None

    return Timers
