/* Pipeline stage 4 (C, keyed): running count per key.
 *
 * State per key: the count as a little-endian u64. For every record: increment, and
 * emit (same key, same ts, value = the running count as decimal text). Every key that
 * got records has its state set to the new count. */
#include "weir.h"

static int count(const weir_record *r, weir_state *state, weir_out *out) {
    uint64_t n;
    if (weir_state_get_u64(state, &n) != 0) return -1;
    n += 1;
    weir_state_set_u64(state, n);
    weir_emit_u64(out, r->ts, r->key, r->key_len, n);
    return 0;
}

WEIR_OPERATOR(.process_keyed = count);
