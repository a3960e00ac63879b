/* Orders joined with their payments per order id (C, a two-input keyed process:
 * Flink's KeyedCoProcessFunction). Input 0 carries orders (value: the item), input 1
 * payments (value: the amount), both keyed by order id; an id has at most one of each.
 * Whichever side comes first waits in the id's value state (a side byte `o` or `p`, its
 * time as 8 bytes, then its value) with an event-time timer WAIT ms after it; the other
 * side takes it out, deletes the timer and emits `<item> paid <amount>`. A timer that
 * fires finds its side still alone: `<item> unpaid` or `payment <amount> without order`. */
#include <stdlib.h>
#include <string.h>

#include "weir.h"

#define WAIT 30000

static uint8_t *scratch;
static uint32_t scratch_cap;

/* A buffer of at least n bytes, reused across records. */
static uint8_t *room(uint32_t n) {
    if (n > scratch_cap) {
        uint8_t *b = realloc(scratch, n);
        if (!b) return NULL;
        scratch = b;
        scratch_cap = n;
    }
    return scratch;
}

static int join(uint32_t input, const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out) {
    const uint8_t side = input == 0 ? 'o' : 'p';
    uint32_t len;
    const uint8_t *waiting = weir_state_get(state, &len);
    if (!waiting) {
        uint8_t *b = room(9 + r->value_len);
        if (!b) return weir_fail("out of memory");
        b[0] = side;
        memcpy(b + 1, &r->ts, 8);
        memcpy(b + 9, r->value, r->value_len);
        weir_state_set(state, b, 9 + r->value_len);
        weir_register_event_time_timer(timers, r->ts + WAIT);
        return 0;
    }
    if (len < 9) return weir_bad_input("a waiting side shorter than its header");
    if (waiting[0] == side) return weir_bad_input(input == 0 ? "a second order for one id" : "a second payment for one id");
    int64_t at;
    memcpy(&at, waiting + 1, 8);
    weir_delete_event_time_timer(timers, at + WAIT);
    const uint8_t *other = waiting + 9;
    uint32_t other_len = len - 9;
    const uint8_t *item = input == 0 ? r->value : other, *amount = input == 0 ? other : r->value;
    uint32_t item_len = input == 0 ? r->value_len : other_len, amount_len = input == 0 ? other_len : r->value_len;
    uint8_t *b = room(item_len + 6 + amount_len);
    if (!b) return weir_fail("out of memory");
    memcpy(b, item, item_len);
    memcpy(b + item_len, " paid ", 6);
    memcpy(b + item_len + 6, amount, amount_len);
    weir_emit(out, r->ts, r->key, r->key_len, b, item_len + 6 + amount_len);
    weir_state_clear(state);
    return 0;
}

static int expire(const weir_timer *t, weir_state *state, weir_timers *timers, weir_out *out) {
    uint32_t len;
    const uint8_t *waiting = weir_state_get(state, &len);
    if (!waiting) return 0;
    if (len < 9) return weir_bad_input("a waiting side shorter than its header");
    const uint8_t *value = waiting + 9;
    uint32_t value_len = len - 9;
    if (waiting[0] == 'o') {
        weir_emit2(out, t->ts, t->key, t->key_len, value, value_len, " unpaid", 7);
    } else {
        uint8_t *b = room(8 + value_len + 14);
        if (!b) return weir_fail("out of memory");
        memcpy(b, "payment ", 8);
        memcpy(b + 8, value, value_len);
        memcpy(b + 8 + value_len, " without order", 14);
        weir_emit(out, t->ts, t->key, t->key_len, b, 8 + value_len + 14);
    }
    weir_state_clear(state);
    return 0;
}

WEIR_OPERATOR(.process_co = join, .on_timer = expire);
