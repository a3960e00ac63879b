/* Processing-time timers (C): the first record of every key sets a processing-time timer
 * at the current processing time, so it is due at once and fires as soon as the batch is
 * done; the timer emits `first seen` for the key. The key's state (one byte) remembers
 * that it was seen, so every key is announced exactly once whatever the timing. */
#include "weir.h"

static int on_record(const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out) {
    uint32_t len;
    if (weir_state_get(state, &len)) return 0;
    weir_state_set(state, "1", 1);
    weir_register_processing_time_timer(timers, weir_current_processing_time());
    return 0;
}

static int on_timer(const weir_timer *t, weir_state *state, weir_timers *timers, weir_out *out) {
    if (t->domain != WEIR_PROCESSING_TIME) return weir_fail("first-seen sets processing-time timers only");
    weir_emit_str(out, t->ts, t->key, t->key_len, "first seen");
    return 0;
}

WEIR_OPERATOR(.process_timed = on_record, .on_timer = on_timer);
