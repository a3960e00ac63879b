/* Map benchmark operator: same ts and key, value = "v:" + value. */
#include "weir.h"

static int tag(const weir_record *r, weir_out *out) {
    weir_emit2(out, r->ts, r->key, r->key_len, "v:", 2, r->value, r->value_len);
    return 0;
}

WEIR_OPERATOR(.process = tag);
