/* Event-time tumbling window (C, keyed process with timers): per key, the number of
 * records in each 60 s window of their timestamps, emitted as `<start> <count>` when the
 * watermark passes the window's end (an event-time timer at end - 1, set by the window's
 * first record). A key's open windows are its value state: (start: i64, count: u64)
 * pairs, native byte order (the state never leaves this operator). Late records (behind
 * the watermark) are dropped. */
#include <stdio.h>
#include <string.h>

#include "weir.h"

#define SIZE 60000
#define MAX_OPEN 64 /* open windows per key: far more than a bounded disorder leaves */

typedef struct { int64_t start; uint64_t count; } win;

static int load(weir_state *state, win *w, uint32_t *n) {
    uint32_t len;
    const uint8_t *b = weir_state_get(state, &len);
    if (len % sizeof(win) || len / sizeof(win) > MAX_OPEN) return weir_bad_input("window state has a bad length");
    *n = len / sizeof(win);
    if (b && len) memcpy(w, b, len);
    return 0;
}

static void store(weir_state *state, const win *w, uint32_t n) {
    if (n)
        weir_state_set(state, w, n * (uint32_t)sizeof(win));
    else
        weir_state_clear(state);
}

static int on_record(const weir_record *r, weir_state *state, weir_timers *timers, weir_out *out) {
    int64_t start = r->ts - (r->ts % SIZE + SIZE) % SIZE, end = start + SIZE - 1;
    if (end <= weir_current_watermark()) return 0;
    win w[MAX_OPEN];
    uint32_t n, i;
    if (load(state, w, &n)) return -1;
    for (i = 0; i < n && w[i].start != start; i++) {
    }
    if (i == n) {
        if (n == MAX_OPEN) return weir_fail("more than 64 open windows for one key");
        w[n++] = (win){start, 0};
        weir_register_event_time_timer(timers, end);
    }
    w[i].count++;
    store(state, w, n);
    return 0;
}

static int on_timer(const weir_timer *t, weir_state *state, weir_timers *timers, weir_out *out) {
    win w[MAX_OPEN];
    uint32_t n, i;
    if (load(state, w, &n)) return -1;
    int64_t start = t->ts - SIZE + 1;
    for (i = 0; i < n && w[i].start != start; i++) {
    }
    if (i == n) return weir_bad_input("a timer fired without its window");
    char text[48];
    int len = snprintf(text, sizeof text, "%lld %llu", (long long)start, (unsigned long long)w[i].count);
    weir_emit(out, t->ts, t->key, t->key_len, text, (uint32_t)len);
    w[i] = w[--n];
    store(state, w, n);
    return 0;
}

WEIR_OPERATOR(.process_timed = on_record, .on_timer = on_timer);
