/* Event-time jobs, stage 1 (C): a text line `key,ts` (ts: ms, a decimal integer >= 0)
 * becomes a record with that key, that timestamp and an empty value. The manifest gives
 * this node a watermark strategy, so its timestamps drive event time downstream.
 * Blank lines, `#` comments and malformed lines are dropped: a bad line in an event log
 * should not stop the job, and the count of what was dropped is not this example's point. */
#include "weir.h"

static int parse(const weir_record *r, weir_out *out) {
    const uint8_t *v = r->value;
    uint32_t n = r->value_len, comma = 0;
    if (n == 0 || v[0] == '#') return 0;
    while (comma < n && v[comma] != ',') comma++;
    if (comma == 0 || comma + 1 >= n) return 0;
    int64_t ts = 0;
    for (uint32_t i = comma + 1; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || ts > (INT64_MAX - 9) / 10) return 0;
        ts = ts * 10 + (v[i] - '0');
    }
    weir_emit(out, ts, v, comma, "", 0);
    return 0;
}

WEIR_OPERATOR(.process = parse);
