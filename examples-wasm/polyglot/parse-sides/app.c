/* Joins, stage 1 (C): one log holds both sides of a join, a line per event
 * `KIND,ID,TS,REST` (KIND `order` or `payment`, TS ms >= 0). Argument `kind` picks the
 * side this node keeps: its lines become records keyed by ID at TS with value REST; the
 * other side's lines, blank lines, `#` comments and malformed lines are dropped. A
 * manifest reads the log once and gives each side its own parse node. */
#include <string.h>

#include "weir.h"

static const char *kind;
static uint32_t kind_len;

static int open_sides(const weir_context *ctx) {
    kind = weir_arg("kind", NULL);
    if (!kind || (strcmp(kind, "order") != 0 && strcmp(kind, "payment") != 0))
        return weir_fail("parse-sides needs the argument kind = \"order\" or \"payment\"");
    kind_len = (uint32_t)strlen(kind);
    return 0;
}

/* The next comma at or after `from`, or n. */
static uint32_t comma(const uint8_t *v, uint32_t from, uint32_t n) {
    while (from < n && v[from] != ',') from++;
    return from;
}

static int parse(const weir_record *r, weir_out *out) {
    const uint8_t *v = r->value;
    uint32_t n = r->value_len;
    if (n <= kind_len || memcmp(v, kind, kind_len) != 0 || v[kind_len] != ',') return 0;
    uint32_t id = kind_len + 1, id_end = comma(v, id, n);
    uint32_t ts_at = id_end + 1, ts_end = comma(v, ts_at, n);
    if (id_end == id || ts_end >= n || ts_end == ts_at) return 0;
    int64_t ts = 0;
    for (uint32_t i = ts_at; i < ts_end; i++) {
        if (v[i] < '0' || v[i] > '9' || ts > (INT64_MAX - 9) / 10) return 0;
        ts = ts * 10 + (v[i] - '0');
    }
    weir_emit(out, ts, v + id, id_end - id, v + ts_end + 1, n - ts_end - 1);
    return 0;
}

WEIR_OPERATOR(.process = parse, .open = open_sides);
