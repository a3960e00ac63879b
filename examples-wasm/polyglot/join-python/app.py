"""Orders joined with their payments per order id (Python, a two-input keyed process:
Flink's KeyedCoProcessFunction). Input 0 carries orders (value: the item), input 1
payments (value: the amount), both keyed by order id; an id has at most one of each.

Whichever side of an id comes first waits in the id's value state (`o` or `p`, its
time, `,`, its value) with an event-time timer WAIT ms after it; the other side, when
it comes, takes it out, deletes the timer and emits `<item> paid <amount>`. A timer that
fires finds its side still alone: `<item> unpaid` or `payment <amount> without order`.
So an order and a payment less than WAIT apart always meet, whichever input is faster.
"""

import weir

WAIT = 30_000
SIDES = b"op"


@weir.keyed_co_process
def join(inp, key, state, value, ts, ctx):
    side = SIDES[inp : inp + 1]
    waiting = state.value
    if waiting is None:
        state.update(side + b"%d," % ts + value)
        ctx.register_event_time_timer(ts + WAIT)
        return None
    if waiting[:1] == side:
        raise weir.BadInput(f"a second {'order' if inp == 0 else 'payment'} for id {key!r}")
    at, other = waiting[1:].split(b",", 1)
    ctx.delete_event_time_timer(int(at) + WAIT)
    state.clear()
    item, amount = (value, other) if inp == 0 else (other, value)
    return [(key, item + b" paid " + amount)]


@join.on_timer
def expire(ts, domain, key, state, ctx):
    waiting = state.value
    state.clear()
    if waiting is None:
        return None
    value = waiting[1:].split(b",", 1)[1]
    if waiting[:1] == b"o":
        return [(key, value + b" unpaid")]
    return [(key, b"payment " + value + b" without order")]


Operator = weir.component(join)
Timers = weir.timers(join)
