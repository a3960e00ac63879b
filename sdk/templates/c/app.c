/* {{name}}: a Weir operator (component of world `operator-component`).
 * Every record comes out with its value in ASCII uppercase; key and ts unchanged. */
#include <stdlib.h>

#include "weir.h"

static uint8_t *buf;
static size_t cap;

static int upper(const weir_record *r, weir_out *out) {
    if (r->value_len > cap) {
        cap = r->value_len * 2;
        buf = realloc(buf, cap);
        if (!buf) return weir_fail("out of memory");
    }
    for (uint32_t i = 0; i < r->value_len; i++) {
        uint8_t c = r->value[i];
        buf[i] = c >= 'a' && c <= 'z' ? c - 32 : c;
    }
    weir_emit(out, r->ts, r->key, r->key_len, buf, r->value_len);
    return 0;
}

WEIR_OPERATOR(.process = upper);
